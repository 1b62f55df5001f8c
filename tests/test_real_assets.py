"""End to end on the embedded real assets: SmolLM2-135M-Instruct adapted to Russian.

Small slices keep it to about a minute on two cores (after the one-time asset fetch): a 2k
Russian tokenizer trained like SmolLM2's, `mean` and `focus` inits through a recipe, bits per
byte on held-out fortunes. It checks what a user of `make demo` relies on, with real weights,
real text and a real GGUF-converted checkpoint.
"""

from __future__ import annotations

import json

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from vocadapt.recipe import recipe_from_dict, run_recipe

    out = tmp_path_factory.mktemp("real") / "run"
    recipe = recipe_from_dict(
        {
            "name": "smoke",
            "source_model": "${assets.smollm2}",
            "corpus": ["${assets.russian_text}/train.txt"],
            "heldout": ["${assets.russian_text}/heldout.txt"],
            "tokenizer": {"mode": "train", "kind": "bpe", "vocab_size": 2000, "max_chars": 400_000, "show_progress": False},
            "init": [
                {"method": "mean"},
                {"method": "focus", "aux_corpus": ["${assets.russian_text}/train.txt"], "min_count": 3, "epochs": 1},
            ],
            "eval": {"tasks": ["bpb"], "max_docs": 40, "progress": False},
            "report": True,
        },
        out,
    )
    return out, run_recipe(recipe, echo=lambda *_: None)


def test_adapted_models_load_and_compress_russian(run):
    out, summary = run
    rows = {r["model"]: r["metrics"] for r in summary["models"]}
    original = rows.pop("original")
    assert set(rows) == {"mean", "focus"}
    # A 2k Russian vocabulary already beats SmolLM2's 49k English-centric one on Russian text.
    assert original["chars_per_token"] < 1.5
    for name, m in rows.items():
        assert m["chars_per_token"] > 2.0, name
        assert 0.5 < m["bits_per_byte"] < 6.0, name
    # The FVT mean keeps most of what the model knows: far better than noise (~4 bits/byte).
    assert rows["mean"]["bits_per_byte"] < original["bits_per_byte"] + 0.5
    model = AutoModelForCausalLM.from_pretrained(out / "models" / "mean")
    tok = AutoTokenizer.from_pretrained(out / "models" / "mean")
    assert model.get_input_embeddings().weight.shape[0] == len(tok) == 2000
    assert tok.chat_template
    prov = json.loads((out / "models" / "focus" / "vocadapt.json").read_text())
    assert prov["results"]["counts"]["input"]["computed"] > 500
    assert (out / "report.html").is_file()


def test_gguf_file_is_accepted_as_a_source_model():
    from vocadapt import assets
    from vocadapt.io.checkpoint import Checkpoint

    ck = Checkpoint(assets.smollm2_gguf())  # converted once into the cache, then read lazily
    assert ck.model_type == "llama" and ck.vocab.tied
    assert (ck.embedding_rows, ck.hidden_size) == (49152, 576)
    assert ck.path.is_dir() and (ck.path / "config.json").is_file()
    assert "quantization_config" not in ck.config


def test_gguf_file_is_accepted_as_a_regression_helper(tmp_path):
    """A .gguf helper (here SmolLM2 itself): its converted tokenizer becomes the target and the
    map from its own (bf16) embeddings onto the LLM's is close to the identity: R^2 near 1."""
    from vocadapt import assets
    from vocadapt.init import init_embeddings

    report = init_embeddings(assets.smollm2(), assets.smollm2_gguf(), tmp_path / "out", "regression")
    s = report.stats["regression"]["input"]
    assert s["common_tokens"] > 40000 and s["feature_dim"] == 576
    assert s["r2_heldout"] > 0.99 and s["cosine_heldout"] > 0.99


def test_russian_docs_are_russian_prose_unseen_by_the_manpages():
    """The broader training text (issue 19): Russian technical manuals, mostly Cyrillic, with no
    document that shares a line with the held-out man pages."""
    import numpy as np

    from vocadapt import assets
    from vocadapt.train.data import text_hashes

    docs = (assets.russian_docs() / "train.txt").read_text(encoding="utf-8").split("\n%\n")
    assert len(docs) > 1000
    text = "".join(docs)
    letters = [c for c in text if c.isalpha()]
    cyrillic = sum("\u0400" <= c <= "\u04ff" for c in letters)
    assert len(text) > 2_000_000 and cyrillic / len(letters) > 0.6
    man = (assets.russian_manpages() / "heldout.txt").read_text(encoding="utf-8").split("\n%\n")
    man_hashes = np.asarray(sorted({h for d in man for h in text_hashes(d)}), dtype=np.uint64)
    assert not any(np.isin(np.asarray(text_hashes(d), dtype=np.uint64), man_hashes).any() for d in docs)
