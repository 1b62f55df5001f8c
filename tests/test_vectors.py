"""Word-vector I/O, Procrustes, dictionary parsing and fastText training (hermetic, tiny)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from vocadapt.errors import VocadaptError
from vocadapt.vectors import WordVectors, align_vectors, load_vectors, procrustes, read_dictionary, save_vectors


def _wv(words, dim=8, seed=0):
    return WordVectors(list(words), np.random.default_rng(seed).standard_normal((len(words), dim)).astype(np.float32))


@pytest.mark.parametrize("name", ["v.bin", "v.vec"])
def test_word2vec_round_trip_and_language_prefix(tmp_path, name):
    wv = _wv(["eng:house", "eng:cat", "rus:дом", "rus:кот"])
    save_vectors(wv, tmp_path / name)
    back = load_vectors(tmp_path / name)
    assert back.words == wv.words
    np.testing.assert_allclose(back.matrix, wv.matrix, atol=1e-5)
    ru = load_vectors(tmp_path / name, lang="rus")
    assert ru.words == ["дом", "кот"] and ru.coverage(["дом", "мир"]) == (1, 2)
    with pytest.raises(VocadaptError, match="no keys for language 'deu'"):
        load_vectors(tmp_path / name, lang="deu")


def test_glove_text_without_header(tmp_path):
    (tmp_path / "g.txt").write_text("a 1 0\nb 0 1\n", encoding="utf-8")
    wv = load_vectors(tmp_path / "g.txt")
    assert wv.words == ["a", "b"] and wv.dim == 2 and wv.counts[0] > wv.counts[1]


def test_procrustes_recovers_a_known_rotation():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 16))
    q, _ = np.linalg.qr(rng.standard_normal((16, 16)))
    w = procrustes(x, x @ q)
    np.testing.assert_allclose(w, q, atol=1e-5)
    np.testing.assert_allclose(w @ w.T, np.eye(16), atol=1e-5)


def test_align_uses_case_variants_and_reports():
    rng = np.random.default_rng(1)
    src = _wv([f"w{i}" for i in range(50)], 8, 2)
    q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    tgt = WordVectors([f"T{i}" for i in range(50)], src.matrix @ q)
    pairs = [(f"W{i}", f"t{i}") for i in range(50)]  # only lowercase/titlecase variants match
    mapped, report = align_vectors(src, tgt, pairs)
    assert report["pairs_used"] == 50 and report["mean_pair_cosine"] > 0.999
    np.testing.assert_allclose(mapped.matrix, tgt.matrix, atol=1e-4)


def test_align_errors_on_dimension_and_disjoint_dictionary():
    with pytest.raises(VocadaptError, match="different dimensions"):
        align_vectors(_wv(["a"], 4), _wv(["b"], 6), [("a", "b")])
    with pytest.raises(VocadaptError, match="no dictionary pair"):
        align_vectors(_wv(["a"], 4), _wv(["b"], 4), [("x", "y")])


def test_dictd_parsing(tmp_path):
    entry = "cat\n   _I  [kæt]\n      1. _n.\n         1) кот; кошка; tom cat кот\n         2) _зоол. животное\nhouse\n   1) дом; жилище\n"
    with gzip.open(tmp_path / "x.dict.dz", "wt", encoding="utf-8") as fh:
        fh.write(entry)
    pairs = read_dictionary(tmp_path / "x.dict.dz")
    assert ("cat", "кот") in pairs and ("cat", "кошка") in pairs and ("house", "дом") in pairs
    assert all(" " not in t for _, t in pairs)


def test_fasttext_training_is_cached_and_small_corpus_fails(tmp_path, monkeypatch):
    import factories as fx

    from vocadapt.vectors import train_token_vectors

    monkeypatch.setenv("VOCADAPT_CACHE", str(tmp_path / "cache"))
    tok = fx.byte_level_bpe(fx.corpus("ru", 200))
    text = tmp_path / "ru.txt"
    # Enough text that fastText's SGD cannot blow up to NaN on it (it did, rarely, on 300 lines).
    text.write_text("\n\n".join(fx.corpus("ru", 1200, seed=5)), encoding="utf-8")
    path = train_token_vectors([text], tok, dim=8, epochs=1, min_count=2, threads=1)
    wv = load_vectors(path)
    assert len(wv) > 20 and wv.dim == 8 and wv.has_subword_info
    assert all(w in {p.replace(" ", "\u2423") for p in tok.get_vocab()} or w == "</s>" for w in wv.words)
    assert train_token_vectors([text], tok, dim=8, epochs=1, min_count=2, threads=1) == path  # cache hit
    small = tmp_path / "small.txt"
    small.write_text("привет мир\n", encoding="utf-8")
    with pytest.raises(VocadaptError, match="too small"):
        train_token_vectors([small], tok, dim=8, epochs=1, min_count=10, threads=1)


def test_fasttext_nan_retries_then_trains_in_a_fresh_process(tmp_path, monkeypatch):
    """fastText's sporadic in-process NaN: lower rates first, then one attempt in a new process."""
    fasttext = pytest.importorskip("fasttext")
    from vocadapt.vectors.train import train_cbow

    text = tmp_path / "c.txt"
    text.write_text("\n".join(["мир дом домик мир a b c"] * 30) + "\n", encoding="utf-8")
    rates = []

    def nan(*_, lr, **__):
        rates.append(lr)
        raise RuntimeError("Encountered NaN.")

    monkeypatch.setattr(fasttext, "train_unsupervised", nan)
    model = train_cbow(text, dim=8, epoch=1, minCount=1, thread=1)
    assert rates == [0.05, 0.025, 0.0125]
    assert "мир" in model.words and model.get_word_vector("мир").shape == (8,)


def test_fasttext_silent_non_finite_vectors_are_retried(tmp_path, monkeypatch):
    """fastText sometimes returns NaN/garbage vectors without raising: treated as divergence."""
    fasttext = pytest.importorskip("fasttext")
    from vocadapt.vectors.train import train_cbow

    text = tmp_path / "c.txt"
    text.write_text("\n".join(["мир дом домик мир a b c"] * 30) + "\n", encoding="utf-8")
    rates = []

    class Broken:
        def get_input_matrix(self):
            return np.array([[1.4e-45, float("nan")]], dtype=np.float32)

    def broken(*_, lr, **__):
        rates.append(lr)
        return Broken()

    monkeypatch.setattr(fasttext, "train_unsupervised", broken)
    model = train_cbow(text, dim=8, epoch=1, minCount=1, thread=1)
    assert rates == [0.05, 0.025, 0.0125]
    assert np.isfinite(model.get_input_matrix()).all() and "мир" in model.words
