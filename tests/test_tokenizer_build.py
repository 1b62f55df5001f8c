"""Hermetic tests of tokenizer train / extend / optimize / stats on tiny in-process tokenizers."""

from __future__ import annotations

import gzip
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer

from vocadapt.errors import VocadaptError
from vocadapt.tokenizer import (
    ExtendConfig,
    OptimizeConfig,
    TrainConfig,
    extend_tokenizer,
    optimize_tokenizer,
    tokenizer_stats,
    train_tokenizer,
)
from vocadapt.tokenizer import build as C

RU = (
    "Съешь же ещё этих мягких французских булок, да выпей чаю. "
    "Широкая электрификация южных губерний даст мощный толчок подъёму сельского хозяйства. "
    "В чащах юга жил бы цитрус? Да, но фальшивый экземпляр! "
)
EN = "The quick brown fox jumps over the lazy dog. She sells sea shells by the sea shore. def f(x): return x + 1\n"
SAMPLES = [
    "Привет, мир!",
    "Mixed: English и русский, 日本語, ελληνικά 123 4567",
    "emoji 😀👍🏽 and ZWJ 👨‍👩‍👧",
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines\n\n  indented",
    "",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    (d / "ru.txt").write_text("\n%\n".join(RU * (i % 3 + 1) + f" номер {i}" for i in range(60)), encoding="utf-8")
    return d / "ru.txt"


def _save(tok: Tokenizer, path, **cfg) -> str:
    path.mkdir(parents=True, exist_ok=True)
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", **cfg}))
    return str(path)


def _english_lines():
    return [EN, EN.upper(), "hello world, this is english text " * 3] * 20


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """One tiny English-trained source tokenizer per family."""
    root = tmp_path_factory.mktemp("sources")
    out = {}
    # GPT-2 / SmolLM2 style byte-level BPE, specials first.
    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    t.train_from_iterator(_english_lines(), trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    out["bytelevel"] = _save(t, root / "bytelevel", eos_token="<|im_end|>", bos_token="<|im_start|>",
                             chat_template="{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}")
    # Llama-2 / Mistral style: '▁' spaces, byte fallback.
    r = train_tokenizer(None or _write(root / "en.txt"), config=TrainConfig(kind="bpe", vocab_size=400, show_progress=False),
                        out=root / "spbpe")
    out["spbpe"] = r["out"]
    r = train_tokenizer(root / "en.txt", config=TrainConfig(kind="unigram", vocab_size=400, show_progress=False),
                        out=root / "unigram")
    out["unigram"] = r["out"]
    # BERT style WordPiece.
    t = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    t.normalizer = normalizers.BertNormalizer(lowercase=False)
    t.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    t.decoder = decoders.WordPiece()
    t.train_from_iterator(_english_lines(), trainers.WordPieceTrainer(
        vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"], show_progress=False))
    out["wordpiece"] = _save(t, root / "wordpiece", unk_token="[UNK]", pad_token="[PAD]")
    # WordLevel: a family that cannot be extended.
    t = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    t.train_from_iterator(_english_lines(), trainers.WordLevelTrainer(special_tokens=["[UNK]"], show_progress=False))
    out["wordlevel"] = _save(t, root / "wordlevel")
    return out


def _write(path):
    path.write_text("\n\n".join(_english_lines()), encoding="utf-8")
    return path


def _vocab(path):
    return Tokenizer.from_file(f"{path}/tokenizer.json").get_vocab(with_added_tokens=True)


# ---------------------------------------------------------------- train

@pytest.mark.parametrize("kind", ["bpe", "unigram"])
@pytest.mark.parametrize("like", [None, "bytelevel", "spbpe"])
def test_train_round_trip_and_loads(tmp_path, corpus, sources, kind, like):
    cfg = TrainConfig(kind=kind, vocab_size=500, like=sources[like] if like else None, show_progress=False)
    r = train_tokenizer(corpus, config=cfg, out=tmp_path / "t")
    tok = AutoTokenizer.from_pretrained(r["out"])
    assert len(tok) == r["vocab_size"] <= 500
    for s in SAMPLES:
        assert tok.decode(tok.encode(s, add_special_tokens=False)) == s
    assert (tmp_path / "t" / "vocadapt.json").exists()
    if like == "bytelevel":  # specials and chat template come from the source
        assert tok.convert_tokens_to_ids("<|im_end|>") == 2
        assert tok.eos_token == "<|im_end|>" and tok.chat_template


def test_train_compresses_target_better(tmp_path, corpus, sources):
    r = train_tokenizer(corpus, config=TrainConfig(kind="bpe", vocab_size=600, like=sources["bytelevel"], show_progress=False))
    rows = tokenizer_stats([sources["bytelevel"]], documents=[RU])
    new = C.build_tokenizer(r["tokenizer_json"]).encode(RU).ids
    assert len(RU) / len(new) > 2 * rows[0]["chars_per_token"]


def test_train_vocab_too_small(tmp_path, corpus):
    with pytest.raises(VocadaptError, match="smaller than the alphabet"):
        train_tokenizer(corpus, config=TrainConfig(vocab_size=100, show_progress=False), out=tmp_path / "t")
    with pytest.raises(VocadaptError, match="smaller than the alphabet"):
        train_tokenizer(corpus, config=TrainConfig(vocab_size=280, show_progress=False), out=tmp_path / "t")
    assert not (tmp_path / "t").exists()
    assert not list(tmp_path.iterdir())


def test_train_bad_corpus(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(VocadaptError, match="empty"):
        train_tokenizer(empty, config=TrainConfig(vocab_size=500, show_progress=False), out=tmp_path / "o")
    bad = tmp_path / "bad.txt.gz"
    with gzip.open(bad, "wb") as f:
        f.write(RU.encode() + b"\n\xff\xfe broken\n" + RU.encode() + b"\n")
    with pytest.raises(VocadaptError, match="byte offset"):
        train_tokenizer(bad, config=TrainConfig(vocab_size=400, show_progress=False), out=tmp_path / "o")
    assert not (tmp_path / "o").exists()
    r = train_tokenizer(bad, config=TrainConfig(vocab_size=400, errors="skip", show_progress=False))
    assert r["corpus"]["skipped_lines"] == 1


def test_train_jsonl_text_field(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text("\n".join(json.dumps({"body": RU + str(i)}, ensure_ascii=False) for i in range(20)), encoding="utf-8")
    with pytest.raises(VocadaptError, match="text-field"):
        train_tokenizer(p, config=TrainConfig(vocab_size=400, show_progress=False))
    r = train_tokenizer(p, config=TrainConfig(vocab_size=400, text_field="body", show_progress=False))
    assert r["corpus"]["documents"] == 20


# ---------------------------------------------------------------- extend

@pytest.mark.parametrize("family", ["bytelevel", "spbpe", "unigram", "wordpiece"])
def test_extend_keeps_old_ids(tmp_path, corpus, sources, family):
    src = sources[family]
    r = extend_tokenizer(src, corpus, config=ExtendConfig(add=60, show_progress=False), out=tmp_path / "x")
    old, new = _vocab(src), _vocab(r["out"])
    assert all(new[t] == i for t, i in old.items())  # every old string keeps its id
    # Only Cyrillic-bearing tokens are added by default; the small corpus may support a few less.
    n_add = r["added"]
    assert 50 <= n_add <= 60 and (n_add == 60 or "warning" in r)
    assert len(new) == len(old) + n_add == r["vocab_size"]
    assert sorted(new.values()) == list(range(len(new)))
    mapping = json.loads((tmp_path / "x" / C.VOCAB_MAPPING_FILE).read_text())["new_to_old"]
    assert mapping[: len(old)] == list(range(len(old))) and mapping[len(old):] == [None] * n_add
    tok = AutoTokenizer.from_pretrained(r["out"])
    assert len(tok) == len(new)
    if family != "wordpiece":  # WordPiece normalizes and drops whitespace by design
        for s in SAMPLES:
            assert tok.decode(tok.encode(s, add_special_tokens=False)) == s
    # The new tokens are used on target text.
    old_enc = C.build_tokenizer(C.load_source(src).json).encode(RU, add_special_tokens=False).tokens
    new_enc = tok.tokenize(RU)
    if family == "wordpiece":  # an unknown word is one [UNK]: shorter, but lost; now it is spelled
        assert new_enc.count("[UNK]") < old_enc.count("[UNK]")
    else:
        assert len(new_enc) < len(old_enc)


def test_extend_chat_template_and_specials_carried(tmp_path, corpus, sources):
    r = extend_tokenizer(sources["bytelevel"], corpus, config=ExtendConfig(add=20, show_progress=False), out=tmp_path / "x")
    tok = AutoTokenizer.from_pretrained(r["out"])
    assert tok.eos_token == "<|im_end|>" and tok.bos_token == "<|im_start|>"
    text = tok.apply_chat_template([{"role": "user", "content": "Привет"}], tokenize=False)
    assert text == "<|im_start|>Привет<|im_end|>"


def test_extend_bad_input(tmp_path, corpus, sources):
    with pytest.raises(VocadaptError, match="--add must be a positive"):
        extend_tokenizer(sources["bytelevel"], corpus, config=ExtendConfig(add=0), out=tmp_path / "x")
    with pytest.raises(VocadaptError, match="cannot be extended"):
        extend_tokenizer(sources["wordlevel"], corpus, config=ExtendConfig(add=10), out=tmp_path / "x")
    with pytest.raises(VocadaptError, match="no tokenizer.json"):
        extend_tokenizer(tmp_path, corpus, config=ExtendConfig(add=10), out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_extend_refuses_existing_output(tmp_path, corpus, sources):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(VocadaptError, match="not empty"):
        extend_tokenizer(sources["bytelevel"], corpus, config=ExtendConfig(add=10, show_progress=False), out=tmp_path / "x")
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"


# ---------------------------------------------------------------- optimize

@pytest.mark.parametrize("family", ["bytelevel", "spbpe"])
def test_optimize_mapping_is_exact(tmp_path, corpus, sources, family):
    src = sources[family]
    r = optimize_tokenizer(src, corpus, config=OptimizeConfig(keep=330, add=40, show_progress=False), out=tmp_path / "o")
    old = {i: t for t, i in _vocab(src).items()}
    new = {i: t for t, i in _vocab(r["out"]).items()}
    mapping = json.loads((tmp_path / "o" / C.VOCAB_MAPPING_FILE).read_text())["new_to_old"]
    assert len(mapping) == len(new) == r["vocab_size"]
    kept = [i for i, o in enumerate(mapping) if o is not None]
    assert len(kept) <= 330 and mapping.count(None) == 40
    assert all(new[i] == old[mapping[i]] for i in kept)  # same string at the mapped id
    assert mapping[:3] == [0, 1, 2]  # specials stay
    tj = r["tokenizer_json"]
    vocab = tj["model"]["vocab"]
    assert all(a in vocab and b in vocab and a + b in vocab for a, b in C.bpe_merges(tj["model"]))
    if family == "bytelevel":
        assert all(ch in vocab for ch in pre_tokenizers.ByteLevel.alphabet() if ch in _vocab(src))
    else:
        assert all(b in vocab for b in C.BYTE_PIECES)
    tok = AutoTokenizer.from_pretrained(r["out"])
    for s in SAMPLES:
        assert tok.decode(tok.encode(s, add_special_tokens=False)) == s


def test_optimize_keep_too_small(tmp_path, corpus, sources):
    with pytest.raises(VocadaptError, match="must stay"):
        optimize_tokenizer(sources["bytelevel"], corpus, config=OptimizeConfig(keep=10, add=10), out=tmp_path / "o")
    with pytest.raises(VocadaptError, match="needs a BPE"):
        optimize_tokenizer(sources["unigram"], corpus, config=OptimizeConfig(keep=300, add=10), out=tmp_path / "o")
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- stats

def test_stats_columns(sources):
    rows = tokenizer_stats([sources["bytelevel"], sources["spbpe"]], documents=[RU, EN], reference=sources["bytelevel"])
    a, b = rows
    assert a["overlap_with_reference"] == 1.0 and 0 < b["overlap_with_reference"] < 1
    assert a["bytes_per_token"] >= a["chars_per_token"] > 0
    assert a["byte_token_share"] > 0  # Cyrillic splits into partial-UTF-8 byte tokens
    assert b["byte_token_share"] > 0  # English-trained SP-BPE falls back to <0xNN> on Cyrillic
    assert a["tokens_per_word"] > 1


# ---------------------------------------------------------------- property-based round trip

@pytest.fixture(scope="module")
def extended_all(tmp_path_factory, corpus, sources):
    root = tmp_path_factory.mktemp("ext")
    return {
        f: Tokenizer.from_file(f"{extend_tokenizer(sources[f], corpus, config=ExtendConfig(add=40, show_progress=False), out=root / f)['out']}/tokenizer.json")
        for f in ("bytelevel", "spbpe", "unigram")
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# U+2581 ("▁") is excluded: SentencePiece-style tokenizers spell spaces with it, so a literal
# one in the input decodes back to a space (as in Llama-2 itself), which is not an extend bug.
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\u2581"), max_size=40))
def test_round_trip_property(extended_all, text):
    for tok in extended_all.values():
        assert tok.decode(tok.encode(text, add_special_tokens=False).ids, skip_special_tokens=False) == text
