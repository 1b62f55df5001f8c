"""extend / optimize / train --like / init on the id layouts of real model families (issue 11).

Scaled-down fixtures from ``factories.LAYOUTS``: SmolLM2/GPT-2 (specials first), Llama-3 and
Qwen (specials after the BPE ids; Qwen's model padded past its tokenizer), Llama-2 (current and
legacy SentencePiece conversions), Gemma (hundreds of ``<unused>`` specials, one after the
pieces), BERT (WordPiece), XLM-R (Unigram, ``<mask>`` last).
"""

from __future__ import annotations

import json

import factories as fx
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig

from vocadapt.tokenizer.load import load_tokenizer

from vocadapt.errors import VocadaptError
from vocadapt.init import init_embeddings
from vocadapt.tokenizer import ExtendConfig, OptimizeConfig, TrainConfig, extend_tokenizer, optimize_tokenizer, train_tokenizer

MIXED = [
    "Привет, мир! Hello world.",
    "  def f(x):\n\treturn x + 1  # код 😀👍🏽",
    " ведущий пробел",
    "ёжик naïve 2024 3.14\n\n  отступ",
    "",
]
ENGLISH = "The model reads text and the tokenizer splits words into pieces. def f(x): return 42 # 😀\n"
RUSSIAN = "Адаптация языка требует новых векторов для каждого нового токена в словаре модели."


@pytest.fixture(scope="module")
def ru_corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "ru.txt"
    path.write_text("\n\n".join(fx.corpus("ru", 400, seed=11) + fx.corpus("mixed", 50, seed=12)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")
    # English-only sources (as real English-centric models): Russian must gain from extension.
    texts = fx.corpus("en", 300) + [s for s in fx.corpus("mixed", 100, seed=1) if not any("а" <= c <= "я" for c in s.lower())]
    return {name: fx.layout_model(name, root / name, texts) for name in fx.LAYOUTS}


@pytest.fixture(scope="module")
def extended(tmp_path_factory, layouts, ru_corpus):
    root = tmp_path_factory.mktemp("extended")
    return {
        name: extend_tokenizer(src, [ru_corpus], config=ExtendConfig(add=40, show_progress=False), out=root / name)
        for name, src in layouts.items()
    }


def _ids(tok, text):
    return tok.encode(text, add_special_tokens=False)


@pytest.mark.parametrize("layout", list(fx.LAYOUTS))
def test_extend_keeps_layout(layout, layouts, extended):
    old, new = load_tokenizer(layouts[layout]), load_tokenizer(extended[layout]["out"])
    ov, nv = old.get_vocab(), new.get_vocab()
    assert all(nv.get(t) == i for t, i in ov.items())  # every old string keeps its id, specials included
    n_old = max(ov.values()) + 1
    added = sorted(i for t, i in nv.items() if t not in ov)
    assert added == list(range(n_old, n_old + len(added))) and len(added) >= 30  # after every id in use
    for role in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id", "mask_token_id"):
        assert getattr(new, role) == getattr(old, role), role
    assert old.all_special_tokens == new.all_special_tokens
    assert _ids(new, ENGLISH) == _ids(old, ENGLISH)  # English untouched by default
    if layout == "bert":  # an unknown word is one [UNK]: not longer, but lost; now more is spelled
        assert _ids(new, RUSSIAN).count(new.unk_token_id) < _ids(old, RUSSIAN).count(old.unk_token_id)
    else:
        assert len(_ids(new, RUSSIAN)) < len(_ids(old, RUSSIAN))
    for s in MIXED:  # decode(encode(x)): exact wherever the source itself is exact
        back, back_old = new.decode(_ids(new, s)), old.decode(_ids(old, s))
        if back_old == s or layout not in ("bert", "xlm-r", "llama2"):  # normalizing / Metaspace 'first' sources
            assert back == s
    # Word starts stay at the front of pieces (no 'ка▁' crossing a word boundary).
    assert not any("▁" in t[1:] for t in extended[layout]["new_tokens"])


@pytest.mark.parametrize("layout", ["llama3", "qwen3", "gemma3", "llama2", "xlm-r", "bert"])
def test_init_on_extended_layout(layout, layouts, extended, tmp_path):
    src = layouts[layout]
    report = init_embeddings(src, extended[layout]["out"], tmp_path / "m", "mean")
    before, after = load_file(src / "model.safetensors"), load_file(tmp_path / "m" / "model.safetensors")
    name = next(n for n in before if "word_embeddings" in n or "embed_tokens" in n)
    rows_before = before[name].shape[0]
    n_ids = max(load_tokenizer(src).get_vocab().values()) + 1
    assert torch.equal(after[name][:n_ids], before[name][:n_ids])
    n_new = extended[layout]["vocab_size"]
    assert report.target_rows == max(n_new, rows_before)  # Qwen's padding rows are kept
    assert AutoConfig.from_pretrained(tmp_path / "m").vocab_size == report.target_rows == after[name].shape[0]


@pytest.mark.parametrize("layout", ["llama3", "qwen3", "gemma3"])
def test_optimize_on_layout(layout, layouts, ru_corpus, tmp_path):
    src = layouts[layout]
    r = optimize_tokenizer(src, [ru_corpus], config=OptimizeConfig(keep=420, add=30, show_progress=False), out=tmp_path / "o")
    old = {i: t for t, i in load_tokenizer(src).get_vocab().items()}
    new_tok = load_tokenizer(r["out"])
    new = {i: t for t, i in new_tok.get_vocab().items()}
    mapping = json.loads((tmp_path / "o" / "vocab_mapping.json").read_text())["new_to_old"]
    assert len(mapping) == len(new)
    assert all(new[i] == old[o] for i, o in enumerate(mapping) if o is not None)
    assert set(load_tokenizer(src).all_special_tokens) <= set(new_tok.get_vocab())
    for s in MIXED:
        assert new_tok.decode(_ids(new_tok, s)) == s


@pytest.mark.parametrize("layout", ["llama3", "gemma3", "llama2"])
def test_train_like_layout(layout, layouts, ru_corpus, tmp_path):
    r = train_tokenizer(ru_corpus, config=TrainConfig(kind="bpe", vocab_size=700, like=str(layouts[layout]), show_progress=False),
                        out=tmp_path / "t")
    tok = load_tokenizer(r["out"])
    src = load_tokenizer(layouts[layout])
    assert set(src.all_special_tokens) <= set(tok.get_vocab())
    assert not any("▁" in t[1:] for t in tok.get_vocab() if t not in src.all_special_tokens)
    for s in MIXED:
        assert tok.decode(_ids(tok, s)) == src.decode(_ids(src, s))


def test_script_any_is_the_old_behaviour(layouts, ru_corpus, tmp_path):
    corpus = tmp_path / "c.txt"  # Russian plus an English word the source does not know
    corpus.write_text(ru_corpus.read_text() + "\n\nfrobnicate quuxify frobnicate" * 200, encoding="utf-8")
    src = layouts["smollm2"]
    tok = load_tokenizer(src)
    word = " frobnicate quuxify"
    r = extend_tokenizer(src, [corpus], config=ExtendConfig(add=80, script="any", show_progress=False))
    assert r["script"] == "any"
    from vocadapt.tokenizer import build as C

    any_ids = C.build_tokenizer(r["tokenizer_json"]).encode(word, add_special_tokens=False).ids
    assert len(any_ids) < len(_ids(tok, word))  # today's behaviour: English words are learned too
    r2 = extend_tokenizer(src, [corpus], config=ExtendConfig(add=80, show_progress=False))
    assert r2["script"] == "Cyrillic"
    assert C.build_tokenizer(r2["tokenizer_json"]).encode(word, add_special_tokens=False).ids == _ids(tok, word)


def test_touches_script_on_byte_pieces():
    from vocadapt.tokenizer.canonical import CanonicalToken, script_chars, touches_script

    cyr = script_chars("Cyrillic")
    assert touches_script(CanonicalToken("при".encode(), True), cyr)
    assert touches_script(CanonicalToken(" п".encode()[:2], True), cyr)  # ' ' + lead byte of a Cyrillic letter
    assert not touches_script(CanonicalToken(b"and", True), cyr)
    assert not touches_script(CanonicalToken("é".encode()[:1], False), cyr)  # lead byte of Latin-1 letters
    from vocadapt.tokenizer.extend import script_filter

    with pytest.raises(VocadaptError, match="unknown Unicode script"):
        script_filter(ExtendConfig(script="Klingonish"), lambda: iter(["x"]))
    assert script_filter(ExtendConfig(), lambda: iter(["Привет, мир! ok"]))[0] == "Cyrillic"


# ---------------------------------------------------------------- bad input


def _edit_tokenizer(src, dest, edit):
    import shutil

    shutil.copytree(src, dest)
    tj = json.loads((dest / "tokenizer.json").read_text())
    edit(tj)
    (dest / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False))
    return dest


def test_bad_layouts_refused(layouts, ru_corpus, tmp_path):
    def special_inside(tj):
        tj["added_tokens"][0]["id"] = 300  # an id the BPE vocabulary gives to another piece

    def holes(tj):
        for t in tj["added_tokens"][2:]:
            t["id"] += 5

    cases = {
        "inside": (special_inside, "which the vocabulary gives to"),
        "holes": (holes, "non-contiguous ids"),
    }
    for name, (edit, message) in cases.items():
        bad = _edit_tokenizer(layouts["llama3"], tmp_path / name, edit)
        for fn, cfg in ((extend_tokenizer, ExtendConfig(add=10, show_progress=False)),
                        (optimize_tokenizer, OptimizeConfig(keep=400, add=10, show_progress=False))):
            with pytest.raises(VocadaptError, match=message):
                fn(bad, [ru_corpus], config=cfg, out=tmp_path / f"out-{name}")
        with pytest.raises(VocadaptError, match=message):
            train_tokenizer(ru_corpus, config=TrainConfig(vocab_size=600, like=str(bad), show_progress=False), out=tmp_path / "t")
    assert not any(p.name.startswith("out-") or p.name == "t" for p in tmp_path.iterdir())


def test_vocab_larger_than_embedding_refused(layouts, ru_corpus, tmp_path):
    import shutil

    bad = tmp_path / "small"
    shutil.copytree(layouts["qwen3"], bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["vocab_size"] = 100
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(VocadaptError, match="embedding has 100 rows"):
        extend_tokenizer(bad, [ru_corpus], config=ExtendConfig(add=10, show_progress=False), out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_mismatched_mapping_refused(layouts, extended, tmp_path):
    import shutil

    tok = tmp_path / "tok"
    shutil.copytree(extended["llama3"]["out"], tok)
    mapping = json.loads((tok / "vocab_mapping.json").read_text())
    mapping["new_to_old"][5], mapping["new_to_old"][6] = 6, 5
    (tok / "vocab_mapping.json").write_text(json.dumps(mapping))
    with pytest.raises(VocadaptError, match="does not match these tokenizers"):
        init_embeddings(layouts["llama3"], tok, tmp_path / "m", "mean")
    assert not (tmp_path / "m").exists()


def test_unigram_like_bytelevel_uses_sentencepiece_conventions(layouts, ru_corpus, tmp_path):
    src = layouts["smollm2"]
    cfg = TrainConfig(kind="unigram", vocab_size=500, like=str(src), show_progress=False)
    r = train_tokenizer(ru_corpus, config=cfg, out=tmp_path / "u")
    tok, source = load_tokenizer(r["out"]), load_tokenizer(src)
    assert r["family"] == "sentencepiece-bpe" and r["tokenizer_json"]["model"]["byte_fallback"]
    specials = [t for t in source.all_special_tokens]
    assert [tok.convert_tokens_to_ids(t) for t in specials] == [source.convert_tokens_to_ids(t) for t in specials]
    assert tok.chat_template == source.chat_template and tok.eos_token == source.eos_token
    assert any(t.startswith("▁") for t in tok.get_vocab()) and not any(t.startswith("Ġ") for t in tok.get_vocab())
    default = train_tokenizer(ru_corpus, config=TrainConfig(kind="unigram", vocab_size=500, show_progress=False))
    n_like = len(tok.encode(RUSSIAN, add_special_tokens=False))
    from vocadapt.tokenizer import build as C

    n_default = len(C.build_tokenizer(default["tokenizer_json"]).encode(RUSSIAN, add_special_tokens=False).ids)
    assert n_like <= n_default + 1  # as good as the SentencePiece-style default (same corpus and size)
    for s in MIXED:
        assert tok.decode(_ids(tok, s)) == s


def test_cli_bad_layout_is_one_line(layouts, ru_corpus, tmp_path, capsys):
    from vocadapt.cli import main

    bad = _edit_tokenizer(layouts["qwen3"], tmp_path / "bad", lambda tj: tj["added_tokens"][1].update(id=7))
    with pytest.raises(SystemExit) as e:
        main(["tokenizer", "extend", str(bad), str(ru_corpus), "--add", "10", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and "gives to" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


# --- issue 18: extension never makes text longer, every added token is reachable -------------

# Held-out lines unlike the training corpus: other seeds, English, mixed scripts, probes.
HELD_OUT = [line for doc in fx.corpus("ru", 150, seed=91) + fx.corpus("mixed", 80, seed=92) + fx.corpus("en", 80, seed=93)
            + MIXED + fx.MIXED for line in doc.split("\n")]
BPE_LAYOUTS = [name for name in fx.LAYOUTS if name not in ("bert", "xlm-r")]


def _json(path):
    from vocadapt.tokenizer import build as C

    return C.load_source(path).json


def _words(enc):
    out = {}
    for w, t in zip(enc.word_ids, enc.tokens):
        out.setdefault(w, []).append(t)
    return out


def _longer_lines(src, ext, lines):
    """Lines the extension encodes in more tokens than the source. A WordPiece word the source
    can only write as [UNK] may be spelled out (longer, nothing lost): not counted."""
    from vocadapt.tokenizer import build as C

    old, new = C.build_tokenizer(_json(src)), C.build_tokenizer(ext if isinstance(ext, dict) else _json(ext))
    a = old.encode_batch(lines, add_special_tokens=False)
    b = new.encode_batch(lines, add_special_tokens=False)
    out = []
    for line, x, y in zip(lines, a, b):
        if len(y.ids) > len(x.ids):
            before = _words(x)
            if any(len(t) > len(before.get(w, [])) and before.get(w) != ["[UNK]"] for w, t in _words(y).items()):
                out.append((line, x.tokens, y.tokens))
    return out


@pytest.fixture(scope="module")
def bilingual(tmp_path_factory, ru_corpus):
    """Sources that already read some Russian (as Llama-3, Qwen, Gemma do), extended further.

    Their own Russian merges are what a separately trained, appended BPE conflicts with: with
    the pre-issue-18 extend the Llama-2 layout made 210 of 380 held-out lines longer.
    """
    root = tmp_path_factory.mktemp("bilingual")
    texts = fx.corpus("en", 300) + fx.corpus("ru", 60, seed=5) + fx.corpus("mixed", 100, seed=1)
    out = {}
    for name in fx.LAYOUTS:
        src = fx.layout_model(name, root / name, texts)
        out[name] = (src, extend_tokenizer(src, [ru_corpus], config=ExtendConfig(add=150, show_progress=False)))
    return out


@pytest.mark.parametrize("layout", list(fx.LAYOUTS))
@pytest.mark.parametrize("source_reads_russian", [False, True])
def test_extend_never_longer_and_all_reachable(layout, source_reads_russian, layouts, extended, bilingual, ru_corpus):
    """Line by line: BPE layouts on the training corpus and on held-out text (continued BPE
    guarantees it for any text); WordPiece/Unigram on the corpus, which extend verifies word by
    word (held-out text is not guaranteed there, and their trainers are not deterministic)."""
    from vocadapt.tokenizer.continue_bpe import unreachable

    src, r = bilingual[layout] if source_reads_russian else (layouts[layout], extended[layout])
    assert r["added"] >= 15
    lines = [line for line in ru_corpus.read_text(encoding="utf-8").split("\n") if line.strip()]
    if layout in BPE_LAYOUTS:
        lines += HELD_OUT
    assert _longer_lines(src, r["tokenizer_json"], lines) == []
    assert unreachable(r["tokenizer_json"], r["new_tokens"]) == []


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# Cyrillic and Latin letters, digits, punctuation, whitespace and an emoji: words the corpus
# has, pieces of them and nonsense.
_ALPHABET = "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВЕКМНОПРСТ" + "abcdefghijklmnopqrstuvwxyzTHE" + "0123456789 .,!?-\n\t'\"«»😀"
_WORDS = [w for doc in fx.corpus("ru", 30, seed=11) for w in doc.split()][:300]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_extend_bpe_never_longer_property(data, layouts, extended, bilingual):
    """Any text, not only corpus text: the guarantee of continued BPE on every BPE layout."""
    text = data.draw(st.one_of(
        st.text(alphabet=_ALPHABET, max_size=80),
        st.lists(st.one_of(st.sampled_from(_WORDS), st.text(alphabet=_ALPHABET, max_size=6)), max_size=12).map(" ".join),
    ))
    for layout in BPE_LAYOUTS:
        assert _longer_lines(layouts[layout], extended[layout]["tokenizer_json"], [text]) == [], layout
        src, r = bilingual[layout]
        assert _longer_lines(src, r["tokenizer_json"], [text]) == [], layout


def test_stats_reports_unreachable_added(layouts, extended, tmp_path):
    """`stats` counts appended tokens the model never produces; extend's output has none."""
    import shutil

    from vocadapt.tokenizer import tokenizer_stats

    good = extended["smollm2"]["out"]
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    tj = json.loads((bad / "tokenizer.json").read_text(encoding="utf-8"))
    # A multi-character token no merge produces: a dead embedding row.
    tj["model"]["vocab"]["ĠÐ¶ÑĥÐ¶ÑĥÐ¶Ñĥ"] = n = max(tj["model"]["vocab"].values()) + 1
    (bad / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False), encoding="utf-8")
    mapping = json.loads((bad / "vocab_mapping.json").read_text())
    mapping["new_to_old"].append(None)
    assert len(mapping["new_to_old"]) == n + 1
    (bad / "vocab_mapping.json").write_text(json.dumps(mapping))
    rows = tokenizer_stats([layouts["smollm2"], good, bad], documents=[RUSSIAN])
    assert "unreachable_added" not in rows[0]  # not an extension: no mapping, no figure
    assert [r["unreachable_added"] for r in rows[1:]] == [0, 1]
