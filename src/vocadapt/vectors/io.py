"""Load word vectors from any common format into one shape: a word list and a float32 matrix.

Formats (detected from the file, not trusted from the suffix alone):

* fastText ``.bin`` (magic number) — keeps the model too, so out-of-vocabulary strings still get
  a vector from character n-grams (WECHSEL's "subword information");
* word2vec binary (``.bin`` without the fastText magic) and word2vec/fastText text (``.vec``,
  ``.txt``, with or without the ``count dim`` header, i.e. GloVe too);
* gensim ``KeyedVectors``/``Word2Vec`` saved with ``.save()`` (``.kv``, ``.model``, ``.wv``);
* navec ``.tar`` archives (product-quantized; unpacked to a dense matrix).

Multilingual spaces spell keys with a language prefix (``rus:слово``, ``eng:house``); ``lang=``
keeps one language and strips its prefix. Words are assumed sorted by frequency (true of every
format above); when a file stores no counts, ``counts`` is ``n - rank`` — the same stand-in
gensim uses when it reads such files, and so the one WECHSEL's reference code effectively uses.
"""

from __future__ import annotations

import pickle
import re
import struct
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vocadapt.errors import VocadaptError

FASTTEXT_MAGIC = 793712314
_LANG_PREFIX = re.compile(r"^([a-z]{2,3}(?:_[A-Z][a-z]{3})?):(.+)$", re.S)  # "rus:", "rus_Cyrl:"


@dataclass
class WordVectors:
    """``words[i]`` has vector ``matrix[i]`` ((n, dim) float32) and frequency proxy ``counts[i]``."""

    words: list[str]
    matrix: np.ndarray
    counts: np.ndarray | None = None
    source: str = ""
    _model: Any = field(default=None, repr=False)  # a loaded fastText model (see ``fasttext_model``)
    fasttext_path: str | None = field(default=None, repr=False)  # a fastText .bin, loaded on first use
    _index: dict[str, int] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.matrix.ndim != 2 or self.matrix.shape[0] != len(self.words):
            raise VocadaptError(f"word vectors {self.source}: {len(self.words)} words but matrix {self.matrix.shape}")
        if self.counts is None:
            n = len(self.words)
            self.counts = np.arange(n, 0, -1, dtype=np.float64)

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def index(self) -> dict[str, int]:
        if self._index is None:
            index: dict[str, int] = {}
            for i, w in enumerate(self.words):
                index.setdefault(w, i)  # first (most frequent) spelling wins
            self._index = index
        return self._index

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def vector(self, word: str) -> np.ndarray | None:
        i = self.index.get(word)
        return None if i is None else self.matrix[i]

    @property
    def fasttext_model(self) -> Any:
        """The fastText model when loaded from a ``.bin`` (vectors for any string), else None.
        Loaded on first use: the word vectors themselves do not need it."""
        if self._model is None and self.fasttext_path is not None:
            import fasttext

            fasttext.FastText.eprint = lambda *a, **k: None  # silence its deprecation chatter
            self._model = fasttext.load_model(self.fasttext_path)
        return self._model

    @property
    def has_subword_info(self) -> bool:
        return self._model is not None or self.fasttext_path is not None

    def languages(self) -> dict[str, int]:
        """Count of keys per language prefix ('' for keys without one)."""
        out: dict[str, int] = {}
        for w in self.words:
            m = _LANG_PREFIX.match(w)
            key = m.group(1) if m else ""
            out[key] = out.get(key, 0) + 1
        return out

    def select_languages(self, langs: list[str] | None) -> WordVectors:
        """Keys of the languages ``langs`` (all keys when None), each with its ``lang:`` prefix
        stripped; keys without a prefix count as language ''."""
        wanted = set(langs) if langs else None
        keep, words = [], []
        for i, w in enumerate(self.words):
            m = _LANG_PREFIX.match(w)
            lang, word = (m.group(1), m.group(2)) if m else ("", w)
            if wanted is None or lang in wanted:
                keep.append(i)
                words.append(word)
        idx = np.asarray(keep, dtype=np.int64)
        label = f"{self.source}[{','.join(sorted(wanted))}]" if wanted else self.source
        return WordVectors(words, self.matrix[idx], self.counts[idx], label)

    def select_language(self, lang: str | None) -> WordVectors:
        """Only the keys ``lang:word`` (prefix stripped); a file without prefixes is returned as is."""
        if lang is None:
            return self
        langs = self.languages()
        if lang not in langs:
            if set(langs) == {""}:
                return self  # a monolingual file: every key is in the one language
            raise VocadaptError(
                f"word vectors {self.source} have no keys for language {lang!r} "
                f"(prefixes present: {', '.join(sorted(k for k in langs if k)) or 'none'})"
            )
        return self.select_languages([lang])

    def coverage(self, words: list[str]) -> tuple[int, int]:
        """(how many of ``words`` have a vector, how many were asked)."""
        return sum(1 for w in words if w in self.index), len(words)


def _detect(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".tar"):
        return "navec"
    if name.endswith((".kv", ".model", ".wv", ".kv.gz")):
        return "gensim"
    if name.endswith(".npz"):
        return "npz"
    with open(path, "rb") as fh:
        head = fh.read(4)
        if len(head) == 4 and struct.unpack("<i", head)[0] == FASTTEXT_MAGIC:
            return "fasttext"
        fh.seek(0)
        first = fh.readline(200)
    if name.endswith(".bin"):
        return "word2vec-binary"
    try:
        parts = first.decode("utf-8").split()
    except UnicodeDecodeError:
        return "word2vec-binary"
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return "word2vec-text"
    return "glove-text"


def load_vectors(path: str | Path, *, lang: str | None = None, limit: int | None = None) -> WordVectors:
    """Load a word-vector file (format detected) and optionally keep one language's keys."""
    p = Path(path)
    if not p.is_file():
        raise VocadaptError(f"word vectors not found: {p}")
    if p.stat().st_size == 0:
        raise VocadaptError(f"word vectors {p} is an empty file")
    kind = _detect(p)
    try:
        wv = _LOADERS[kind](p, limit)
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in _EXTRA_MODULES:
            raise
        raise VocadaptError(f"reading {kind} word vectors needs the 'vectors' extra: pip install 'vocadapt[vectors]' ({e.name} missing)") from None
    except _BAD_FILE[kind] as e:
        raise VocadaptError(f"cannot read word vectors {p} as {kind}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if len(wv) == 0:
        raise VocadaptError(f"word vectors {p} hold no words")
    return wv.select_language(lang)


def _load_fasttext(p: Path, limit: int | None) -> WordVectors:
    fast = _read_fasttext_words(p, limit)
    if fast is not None:
        words, matrix, counts = fast
        return WordVectors(words, matrix, counts, str(p), fasttext_path=str(p))
    import fasttext

    fasttext.FastText.eprint = lambda *a, **k: None  # silence its deprecation chatter
    model = fasttext.load_model(str(p))
    words, freqs = model.get_words(include_freq=True, on_unicode_error="replace")
    words = list(words)[:limit]
    matrix = np.stack([model.get_word_vector(w) for w in words]).astype(np.float32) if words else np.zeros((0, model.get_dimension()), np.float32)
    return WordVectors(words, matrix, np.asarray(freqs[: len(words)], dtype=np.float64), str(p), model)


def _fnv1a(grams: list[bytes]) -> np.ndarray:
    """fastText's 32-bit FNV-1a of each byte string, bytes taken as *signed* chars (its
    ``uint32_t(int8_t(c))``), vectorized over the strings one byte position at a time."""
    lengths = np.fromiter(map(len, grams), dtype=np.int64, count=len(grams))
    width = int(lengths.max()) if len(grams) else 0
    padded = np.frombuffer(b"".join(g.ljust(width, b"\0") for g in grams), dtype=np.int8).reshape(len(grams), width)
    h = np.full(len(grams), 2166136261, dtype=np.uint32)
    for j in range(width):
        live = lengths > j
        h[live] = (h[live] ^ padded[live, j].astype(np.int32).astype(np.uint32)) * np.uint32(16777619)
    return h


def _char_ngrams(word: bytes, minn: int, maxn: int) -> list[bytes]:
    """fastText's ``computeSubwords`` of ``<word>``: its character n-grams (UTF-8 characters,
    n in [minn, maxn], no single-character n-gram at either end), in its order."""
    w = b"<" + word + b">"
    out = []
    for i in range(len(w)):
        if w[i] & 0xC0 == 0x80:
            continue
        j, n = i, 1
        while j < len(w) and n <= maxn:
            j += 1
            while j < len(w) and w[j] & 0xC0 == 0x80:
                j += 1
            if n >= minn and not (n == 1 and (i == 0 or j == len(w))):
                out.append(w[i:j])
            n += 1
    return out


def _read_fasttext_words(p: Path, limit: int | None) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    """Words, counts and word vectors of a fastText ``.bin``, read without loading the model.

    fastText's ``load_model`` reads the whole input matrix (2M n-gram buckets x dim: 800 MB at
    dim 100) to use a few rows of it: a word's vector is the mean of its own row and its
    n-grams' bucket rows. Here the file is memory-mapped and only those rows are read, and the
    vector is summed in fastText's order, in float32, and scaled by float32(1 / rows), so it is
    bit for bit what ``model.get_word_vector(word)`` returns (words are decoded with
    ``errors="replace"`` as ``get_words`` does, and a decoded word that is no longer a
    dictionary word gets fastText's out-of-vocabulary vector, as it would there too). Returns
    None for what this reader does not handle (other versions, quantized or pruned models):
    then the fastText library loads the file. The model itself is loaded only if something asks
    for ``fasttext_model`` (vectors of arbitrary strings).
    """
    with open(p, "rb") as fh:
        head = fh.read(92)
        if len(head) < 92:
            return None
        magic, version = struct.unpack_from("<ii", head, 0)
        dim, _ws, _epoch, _min_count, _neg, _word_ngrams, _loss, _kind, bucket, minn, maxn, _lr_rate = struct.unpack_from("<12i", head, 8)
        size, nwords, nlabels, _ntokens, prune_size = struct.unpack_from("<iiiqq", head, 64)
    if magic != FASTTEXT_MAGIC or version != 12 or prune_size != -1 or nlabels != 0 or size != nwords or (maxn and not bucket):
        return None
    data = np.memmap(p, dtype=np.uint8, mode="r")
    span = 64 * size + 4096  # the dictionary's bytes: grown until every entry fits
    while True:
        blob = bytes(data[92 : 92 + span])
        raw_words, counts = [], np.empty(size, dtype=np.int64)
        pos = 0
        try:
            for i in range(size):  # entry: word bytes, NUL, int64 count, int8 type
                end = blob.index(b"\0", pos)
                if end + 27 > len(blob):  # count, type, then quant flag and matrix shape must fit
                    raise ValueError
                raw_words.append(blob[pos:end])
                counts[i] = int.from_bytes(blob[end + 1 : end + 9], "little", signed=True)
                pos = end + 10
            break
        except ValueError:
            if 92 + span >= len(data):
                return None
            span *= 2
    if blob[pos]:  # a quantized input matrix
        return None
    m, n = struct.unpack_from("<qq", blob, pos + 1)
    pos += 92 + 17
    if n != dim or m != nwords + bucket or pos + 4 * m * n > len(data):
        return None
    matrix = np.ndarray((m, n), dtype="<f4", buffer=data, offset=pos)
    ids = {w: i for i, w in enumerate(raw_words)}
    n_keep = size if limit is None else min(size, limit)
    words = [w.decode("utf-8", "replace") for w in raw_words[:n_keep]]
    own: list[int | None] = []
    grams: list[list[bytes]] = []
    for w in words:
        key = w.encode("utf-8")  # what get_word_vector(w) looks up
        own.append(ids.get(key))
        grams.append([] if key == b"</s>" else _char_ngrams(key, minn, maxn))
    flat = [g for gs in grams for g in gs]
    buckets = (_fnv1a(flat) % np.uint32(bucket)).astype(np.int64) + nwords if flat else np.zeros(0, np.int64)
    rows: list[list[int]] = []
    at = 0
    for i, gs in zip(own, grams):
        rows.append(([i] if i is not None else []) + buckets[at : at + len(gs)].tolist())
        at += len(gs)
    out = np.zeros((n_keep, dim), dtype=np.float32)
    width = max((len(r) for r in rows), default=0)
    index = np.full((n_keep, width), -1, dtype=np.int64)
    for k, r in enumerate(rows):
        index[k, : len(r)] = r
    for j in range(width):  # one n-gram position at a time: each word's sum in fastText's order
        has = np.flatnonzero(index[:, j] >= 0)
        out[has] += matrix[index[has, j]]
    lengths = (index >= 0).sum(1)
    scale = np.where(lengths > 0, (1.0 / np.maximum(lengths, 1)).astype(np.float32), np.float32(1))
    out *= scale[:, None].astype(np.float32)
    return words, out, counts[:n_keep].astype(np.float64)


def _from_keyed(kv: Any, p: Path, limit: int | None) -> WordVectors:
    words = list(kv.index_to_key)[:limit]
    matrix = np.asarray(kv.vectors[: len(words)], dtype=np.float32)
    counts = None
    if "count" in getattr(kv, "expandos", {}):
        counts = np.asarray(kv.expandos["count"][: len(words)], dtype=np.float64)
    return WordVectors(words, matrix, counts, str(p))


def _load_w2v_binary(p: Path, limit: int | None) -> WordVectors:
    """word2vec binary format read with NumPy (faster than gensim's per-word parser).

    The format is ``"N D\n"`` then, per word, ``word + b" " + D float32 [+ b"\n"]``. Finding
    where each word starts is sequential (vector bytes may hold any value), so one Python loop
    records the offsets; the vectors are then gathered in one NumPy operation.
    """
    data = p.read_bytes()
    eol = data.index(b"\n")
    n, dim = (int(x) for x in data[:eol].split())
    n = min(n, limit) if limit is not None else n
    width = 4 * dim
    names: list[bytes] = []
    offsets = np.empty(n, dtype=np.int64)
    find = data.index
    pos = eol + 1
    for i in range(n):
        while pos < len(data) and data[pos] in (0x0A, 0x20):  # the optional newline after each vector
            pos += 1
        if pos >= len(data):
            raise VocadaptError(f"{p}: truncated word2vec file at word {i + 1} of {n}")
        space = find(b" ", pos)  # ValueError when the file ends inside a word
        names.append(data[pos:space])
        offsets[i] = pos = space + 1
        pos += width
    if n and offsets[-1] + width > len(data):
        bad = int(np.searchsorted(offsets + width > len(data), True))
        raise VocadaptError(f"{p}: truncated word2vec file at word {bad + 1} of {n}")
    raw = np.lib.stride_tricks.sliding_window_view(np.frombuffer(data, dtype=np.uint8), width) if n else None
    matrix = raw[offsets].view("<f4").astype(np.float32, copy=False) if n else np.zeros((0, dim), np.float32)
    words = [w.decode("utf-8", "replace") for w in names]
    return WordVectors(words, matrix.reshape(n, dim), None, str(p))


def _load_w2v(binary: bool, no_header: bool = False):
    def load(p: Path, limit: int | None) -> WordVectors:
        from gensim.models import KeyedVectors

        kv = KeyedVectors.load_word2vec_format(
            str(p), binary=binary, limit=limit, no_header=no_header, unicode_errors="replace"
        )
        return _from_keyed(kv, p, limit)

    return load


def _load_gensim(p: Path, limit: int | None) -> WordVectors:
    from gensim.models import KeyedVectors
    from gensim.utils import SaveLoad

    obj = SaveLoad.load(str(p))
    kv = obj if isinstance(obj, KeyedVectors) else getattr(obj, "wv", None)
    if kv is None:
        raise VocadaptError(f"{p} is a gensim {type(obj).__name__}, not word vectors")
    return _from_keyed(kv, p, limit)


def _load_navec(p: Path, limit: int | None) -> WordVectors:
    from navec import Navec

    nv = Navec.load(str(p))
    words = list(nv.vocab.words)
    matrix = np.asarray(nv.pq.unpack(), dtype=np.float32)
    keep = [i for i, w in enumerate(words) if w not in ("<unk>", "<pad>")][:limit]
    counts = getattr(nv.vocab, "counts", None)
    counts = np.asarray(counts, dtype=np.float64)[keep] if counts is not None and len(counts) == len(words) else None
    return WordVectors([words[i] for i in keep], matrix[np.asarray(keep)], counts, str(p))


def _load_npz(p: Path, limit: int | None) -> WordVectors:
    with np.load(p, allow_pickle=False) as z:
        missing = {"words", "matrix"} - set(z.files)
        if missing:
            raise VocadaptError(f"{p}: an .npz of word vectors needs arrays 'words' and 'matrix' (missing: {', '.join(sorted(missing))})")
        words = [str(w) for w in z["words"][:limit]]
        counts = z["counts"][: len(words)] if "counts" in z else None
        return WordVectors(words, np.asarray(z["matrix"][: len(words)], np.float32), counts, str(p))


_LOADERS = {
    "fasttext": _load_fasttext,
    "word2vec-binary": _load_w2v_binary,
    "word2vec-text": _load_w2v(False),
    "glove-text": _load_w2v(False, no_header=True),
    "gensim": _load_gensim,
    "navec": _load_navec,
    "npz": _load_npz,
}

# The readers' libraries (the 'vectors' extra): missing, they are an install problem, not a bug.
_EXTRA_MODULES = {"fasttext", "gensim", "navec", "scipy"}

# What each reader raises for a file that is not what it claims to be (read from their code);
# anything else (AttributeError, TypeError, ...) is a bug and keeps its traceback.
_BAD_FILE: dict[str, tuple[type[BaseException], ...]] = {
    # fastText's C++ std::invalid_argument ("wrong file format") arrives as ValueError, other
    # std::exceptions as RuntimeError; a corrupt size field can ask for absurd allocations.
    "fasttext": (ValueError, RuntimeError, MemoryError, OSError),
    # vocadapt's own parser: int() of the header, bytes.index past the end.
    "word2vec-binary": (ValueError, OSError),
    # gensim: ValueError for the header, a non-number or a row of another width; EOFError when the
    # header promises more rows than the file holds.
    "word2vec-text": (ValueError, EOFError, OSError),
    "glove-text": (ValueError, EOFError, OSError),
    # gensim's SaveLoad is pickle: UnpicklingError / EOFError for a foreign or cut file, ImportError
    # for a pickle of classes that do not exist here.
    "gensim": (pickle.UnpicklingError, EOFError, ValueError, OSError, ImportError),
    # navec: tarfile errors, KeyError for a member the archive lacks (tarfile.getmember), numpy's
    # ValueError for a buffer of the wrong size, gzip's OSError/EOFError.
    "navec": (tarfile.TarError, KeyError, ValueError, EOFError, OSError),
    # numpy: BadZipFile for a damaged archive, ValueError for an object array (no pickles here).
    "npz": (zipfile.BadZipFile, ValueError, EOFError, OSError),
}


def save_vectors(wv: WordVectors, path: str | Path) -> Path:
    """Write word2vec format: binary for ``.bin``, text otherwise (any loader here reads it back)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    binary = p.suffix == ".bin"
    bad = [w for w in wv.words if not w or any(c.isspace() for c in w)]
    if bad:
        raise VocadaptError(f"cannot write {len(bad)} keys with whitespace in word2vec format (first: {bad[0]!r})")
    m = np.ascontiguousarray(wv.matrix, dtype=np.float32)
    with open(tmp, "wb") as fh:
        fh.write(f"{len(wv)} {wv.dim}\n".encode())
        if binary:
            for w, row in zip(wv.words, m):
                fh.write(w.encode("utf-8") + b" " + row.astype("<f4").tobytes() + b"\n")
        else:
            for w, row in zip(wv.words, m):
                fh.write((w + " " + " ".join(f"{x:.6g}" for x in row) + "\n").encode("utf-8"))
    tmp.replace(p)
    return p
