"""Language-model training data: a corpus tokenized once, packed into fixed-length blocks.

:func:`tokenize_corpus` streams the corpus, encodes every document the way bits per byte scores
it (a start token in front, no other special tokens) and caches the result under
``cache_dir()/tokenized/<key>`` (key: the tokenizer's ``tokenizer.json`` and the corpus files'
contents). :class:`PackedBlocks` packs documents into blocks of ``seq_len`` tokens that start at
document boundaries: documents are added whole while they fit; one that does not fit starts the
next block, and one longer than a block continues in the next blocks. The unused tail of a
block is padding whose labels are -100. Blocks are served in a seeded permutation per epoch, so
the batch of a step depends on (seed, step) alone.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vocadapt.errors import VocadaptError

log = logging.getLogger("vocadapt")

_FORMAT = 2  # bump when the cached layout or the encoding changes
# Lines at least this long (after whitespace normalization) are checked one by one for overlap
# with held-out text; shorter ones ("Ответ: A", a heading) recur innocently.
_MIN_LINE_CHARS = 32


@dataclass
class TokenizedCorpus:
    """``ids``: every document's tokens, concatenated (int32, shape (n_tokens,));
    ``starts``: offset of each document in ``ids`` plus the end (int64, shape (n_docs + 1,));
    ``text_hashes``: 64-bit hashes of each document's normalized text and of its long lines
    (uint64, sorted), for the held-out overlap check;
    ``key``: the cache key, which fingerprints tokenizer and corpus."""

    ids: np.ndarray
    starts: np.ndarray
    text_hashes: np.ndarray
    key: str

    @property
    def n_docs(self) -> int:
        return len(self.starts) - 1

    @property
    def n_tokens(self) -> int:
        return int(self.starts[-1])


def _hash(text: str) -> int:
    norm = re.sub(r"\s+", " ", text).strip()
    return int.from_bytes(hashlib.blake2b(norm.encode("utf-8"), digest_size=8).digest(), "little")


def text_hashes(doc: str) -> list[int]:
    """Hashes of a document (whitespace normalized, so a re-wrapped copy still matches) and of
    each of its lines of at least ``_MIN_LINE_CHARS`` characters (a document cut differently)."""
    lines = {ln.strip() for ln in doc.splitlines()}
    return [_hash(doc)] + [_hash(ln) for ln in lines if len(ln) >= _MIN_LINE_CHARS]


def _tokenizer_json(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise VocadaptError("training needs a fast tokenizer (tokenizer.json)")
    return backend.to_str()


def corpus_key(tokenizer, paths: Sequence[str | Path], text_field: str) -> str:
    from vocadapt.corpus import list_files
    from vocadapt.provenance import file_sha256

    from vocadapt.model import start_token_id

    h = hashlib.sha256()
    h.update(f"v{_FORMAT}|{text_field}|{start_token_id(tokenizer)}|".encode())
    h.update(_tokenizer_json(tokenizer).encode("utf-8"))
    for f in list_files(paths):
        h.update(file_sha256(f).encode())
    return h.hexdigest()[:20]


def tokenize_corpus(tokenizer, paths: Sequence[str | Path], *, text_field: str = "text",
                    progress: bool = True) -> TokenizedCorpus:
    """The corpus as token ids, from the cache or encoded now (and cached)."""
    from vocadapt.cache import cache_dir
    from vocadapt.corpus import batched, iter_texts
    from vocadapt.model import start_token_id
    from vocadapt.io.atomic import atomic_dir

    key = corpus_key(tokenizer, paths, text_field)
    dest = cache_dir() / "tokenized" / key
    if not (dest / "ids.npy").is_file():
        start = start_token_id(tokenizer)
        chunks, lengths, hashes = [], [], []
        texts = iter_texts(paths, text_field=text_field)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(desc="tokenizing training corpus", unit="doc")
        for batch in batched(texts, 512):
            enc = tokenizer(batch, add_special_tokens=False)["input_ids"]
            for text, ids in zip(batch, enc):
                ids = ([start] if start is not None else []) + list(ids)
                chunks.append(np.asarray(ids, dtype=np.int32))
                lengths.append(len(ids))
                hashes.extend(text_hashes(text))
            if bar is not None:
                bar.update(len(batch))
        if bar is not None:
            bar.close()
        starts = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=starts[1:])
        try:
            with atomic_dir(dest) as tmp:
                np.save(tmp / "ids.npy", np.concatenate(chunks) if chunks else np.zeros(0, np.int32))
                np.save(tmp / "starts.npy", starts)
                np.save(tmp / "text_hashes.npy", np.unique(np.asarray(hashes, dtype=np.uint64)))
                (tmp / "info.json").write_text(json.dumps({
                    "paths": [str(p) for p in paths], "docs": len(lengths), "tokens": int(starts[-1]),
                }) + "\n", encoding="utf-8")
        except VocadaptError:
            # Another process (a rank of the same launch) finished the same cache first.
            if not (dest / "ids.npy").is_file():
                raise
    return TokenizedCorpus(
        ids=np.load(dest / "ids.npy", mmap_mode="r"), starts=np.load(dest / "starts.npy"),
        text_hashes=np.load(dest / "text_hashes.npy"), key=key,
    )


def overlaps(corpus: TokenizedCorpus, texts: Sequence[str]) -> list[bool]:
    """Per held-out document: does it occur in the training corpus, whole or by a long line?"""
    return [bool(np.isin(np.asarray(text_hashes(t), dtype=np.uint64), corpus.text_hashes).any()) for t in texts]


def check_heldout(corpus: TokenizedCorpus, texts: Sequence[str], where: str = "held-out text") -> None:
    """Refuse held-out documents that occur in the training corpus (see :func:`overlaps`)."""
    overlap = [t for t, hit in zip(texts, overlaps(corpus, texts)) if hit]
    if overlap:
        first = re.sub(r"\s+", " ", overlap[0]).strip()
        raise VocadaptError(
            f"{where} overlaps the training corpus: {len(overlap)} of {len(texts)} documents occur in it "
            f"(first: {first[:60]!r}); hold out text that is not trained on, or pass --heldout-overlap drop"
        )


class PackedBlocks:
    """Fixed-length blocks over a :class:`TokenizedCorpus`, each a contiguous span of ``ids``.

    A block is ``ids[begin:end]`` (``end - begin <= seq_len``) followed by padding; it always
    begins at a document start, except the continuation blocks of a document longer than
    ``seq_len``.

    ``cover``: token ids (a model's new rows) the first epoch should show early; None serves
    every epoch in a plain seeded permutation.
    """

    def __init__(self, corpus: TokenizedCorpus, seq_len: int, *, pad_id: int = 0, cover: np.ndarray | None = None):
        if seq_len < 2:
            raise VocadaptError(f"seq_len must be at least 2, not {seq_len}")
        if corpus.n_tokens < seq_len:
            raise VocadaptError(
                f"the training corpus has {corpus.n_tokens} tokens, fewer than one block of seq_len={seq_len}; "
                "add text or lower --seq-len"
            )
        self.corpus, self.seq_len, self.pad_id = corpus, seq_len, pad_id
        spans: list[tuple[int, int]] = []
        begin = end = 0  # the open block is ids[begin:end]
        starts = corpus.starts
        for d in range(corpus.n_docs):
            s, e = int(starts[d]), int(starts[d + 1])
            if e - begin <= seq_len:
                end = e  # the whole document fits in the open block
                continue
            if end > begin:
                spans.append((begin, end))
            # The document opens a new block; a long one fills whole blocks first.
            begin = s
            while e - begin > seq_len:
                spans.append((begin, begin + seq_len))
                begin += seq_len
            end = e
        if end > begin:
            spans.append((begin, end))
        self.spans = np.asarray(spans, dtype=np.int64)
        self.cover = None if cover is None or len(cover) == 0 else np.unique(np.asarray(cover, dtype=np.int64))
        self._perm_cache: dict[tuple[int, int], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.spans)

    @property
    def fill(self) -> float:
        """Fraction of block positions holding real tokens."""
        return float((self.spans[:, 1] - self.spans[:, 0]).sum()) / (len(self.spans) * self.seq_len)

    def permutation(self, epoch: int, seed: int) -> np.ndarray:
        if (epoch, seed) not in self._perm_cache:  # keyed by the seed too: one stream's cache never serves another
            g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            perm = torch.randperm(len(self.spans), generator=g).numpy()
            if epoch == 0 and self.cover is not None:
                perm = self.coverage_order(perm)
            # One epoch is kept, plus a coverage-ordered first epoch: it costs seconds to make, and
            # the run's coverage count reads the last epoch before step 0 reads the first.
            keep = {k: v for k, v in self._perm_cache.items() if k[0] == 0 and self.cover is not None and k[1] == seed}
            self._perm_cache = {**keep, (epoch, seed): perm}
        return self._perm_cache[epoch, seed]

    def _distinct_covered(self) -> tuple[np.ndarray, np.ndarray]:
        """(block, token id) pairs, one per distinct id of ``cover`` in each block, sorted by block.
        Read in slices, so a corpus of billions of tokens never needs one mask of its size."""
        ids, starts = self.corpus.ids, self.spans[:, 0]
        interest = np.zeros(int(self.cover[-1]) + 1, dtype=bool)  # cover is sorted
        interest[self.cover] = True
        n_ids = np.int64(interest.size)
        keys = []
        for lo in range(0, len(ids), 1 << 24):
            chunk = np.asarray(ids[lo : lo + (1 << 24)], dtype=np.int64)
            pos = np.flatnonzero(interest[np.minimum(chunk, n_ids - 1)] & (chunk < n_ids))
            block = np.searchsorted(starts, pos + lo, side="right") - 1  # blocks tile the corpus in order
            keys.append(np.unique(block * n_ids + chunk[pos]))
        key = np.unique(np.concatenate(keys)) if keys else np.zeros(0, np.int64)
        return key // n_ids, key % n_ids

    def coverage_order(self, perm: np.ndarray) -> np.ndarray:
        """``perm`` reordered so that each next block shows the most ids of ``cover`` that no
        earlier block showed (greedy maximum coverage; ties and the blocks that add nothing keep
        ``perm``'s order).

        Why: a row its batches never show learns nothing about its own token, and a short run on
        a large vocabulary shows few of them (the demo's 30 steps of 4 x 128: 3,228 of 16,000 new
        tokens in random order, 5,558 in this one; 200 steps: 10,356 against 14,082)."""
        block, token = self._distinct_covered()
        bounds = np.flatnonzero(np.diff(block)) + 1
        sets = dict(zip(block[np.r_[0, bounds]].tolist(), np.split(token, bounds))) if block.size else {}
        rank = np.empty(len(perm), dtype=np.int64)
        rank[perm] = np.arange(len(perm))
        # Lazy greedy: a block's gain only falls as others are taken, so a popped block whose
        # recounted gain still tops the heap is the best one.
        heap = [(-len(t), int(rank[b]), b) for b, t in sets.items()]
        heapq.heapify(heap)
        shown = np.zeros(int(self.cover[-1]) + 1, dtype=bool)
        first: list[int] = []
        while heap:
            _, r, b = heapq.heappop(heap)
            gain = int((~shown[sets[b]]).sum())
            if gain == 0:
                continue
            if heap and (-gain, r) > heap[0][:2]:
                heapq.heappush(heap, (-gain, r, b))
                continue
            first.append(b)
            shown[sets[b]] = True
        taken = np.zeros(len(perm), dtype=bool)
        taken[first] = True
        return np.concatenate([np.asarray(first, dtype=perm.dtype), perm[~taken[perm]]])

    def block_indices(self, first: int, count: int, seed: int) -> list[int]:
        """Indices of blocks ``first .. first+count-1`` of the endless seeded stream of epochs."""
        n = len(self.spans)
        return [int(self.permutation(i // n, seed)[i % n]) for i in range(first, first + count)]

    def token_counts(self, n_blocks: int, seed: int, minlength: int = 0) -> np.ndarray:
        """How often each token id occurs in the first ``n_blocks`` blocks of the seeded stream:
        what a run of ``steps x batch_size`` blocks shows the model, known before it starts.

        Each whole epoch is a permutation of all blocks, and the blocks hold the corpus once, so
        only the last, partial epoch is read block by block: a long run costs what a short one does."""
        size = max(minlength, int(self.corpus.ids.max(initial=0)) + 1)
        epochs, rest = divmod(n_blocks, len(self.spans))
        counts = np.bincount(self.corpus.ids, minlength=size).astype(np.int64) * epochs
        if rest:
            spans = self.spans[self.permutation(epochs, seed)[:rest]]
            counts += np.bincount(np.concatenate([self.corpus.ids[b:e] for b, e in spans]), minlength=size)
        return counts

    def batch(self, blocks: Sequence[int]) -> dict[str, torch.Tensor]:
        """``input_ids`` (B, seq_len) int64 and ``labels`` (B, seq_len) with -100 on padding."""
        ids = torch.full((len(blocks), self.seq_len), self.pad_id, dtype=torch.long)
        labels = torch.full((len(blocks), self.seq_len), -100, dtype=torch.long)
        for row, b in enumerate(blocks):
            begin, end = self.spans[b]
            chunk = torch.from_numpy(np.asarray(self.corpus.ids[begin:end], dtype=np.int64))
            ids[row, : len(chunk)] = chunk
            labels[row, : len(chunk)] = chunk
        return {"input_ids": ids, "labels": labels}
