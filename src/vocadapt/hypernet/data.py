"""HyperOFA's inputs: per token, the set of external words that contain it, as batches.

The word sets are OFA's (:func:`vocadapt.init.ofa.word_sets`): row t of the incidence lists the
words whose tokenization (four spellings each) contains token t. Only the words some token
uses are kept, in a compact table, so the frozen word-vector table the hypernetwork reads is
as small as the vocabulary needs.

A token's input is its word list, shuffled and capped at ``max_words``; during training, with
probability ``augment_p``, a set of more than 4 words keeps a random 50-100% subset (HyperOFA's
augmentation). Batches are length-bucketed: an epoch's shuffled tokens are cut into pools of
``bucket_pool`` batches, each pool sorted by set size and cut into batches, and the batches
shuffled, so padding stays small while every batch still mixes unrelated tokens (the InfoNCE
negatives). Everything is drawn from generators seeded by (seed, epoch) or (seed, step).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

AUGMENT_MIN_WORDS = 4  # sets this small are never subsampled (HyperOFA)


@dataclass
class WordSets:
    """CSR word sets: token ``t``'s words are ``indices[indptr[t]:indptr[t+1]]`` (rows of ``table``).

    ``table``: (n_words, dim) float32 vectors of exactly the words some token uses.
    """

    indptr: np.ndarray
    indices: np.ndarray
    table: np.ndarray

    @classmethod
    def from_incidence(cls, incidence, vectors: np.ndarray) -> WordSets:
        """Compact the (vocab x words) incidence and the (words x dim) vectors to the used words."""
        inc = incidence.tocsr()
        used, remap = np.unique(inc.indices, return_inverse=True)
        return cls(inc.indptr.astype(np.int64), remap.astype(np.int64), np.asarray(vectors, dtype=np.float32)[used])

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def has_words(self) -> np.ndarray:
        return self.lengths > 0

    def words(self, t: int) -> np.ndarray:
        return self.indices[self.indptr[t] : self.indptr[t + 1]]


@dataclass
class SetBatch:
    """A padded batch: ``words`` (B, L) table rows (0 past each length), ``lengths`` (B,),
    ``tokens`` (B,) token ids, ``target`` (B, k_out) normalized coordinates or None."""

    words: torch.Tensor
    lengths: torch.Tensor
    tokens: torch.Tensor
    target: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.tokens)


def sample_words(words: np.ndarray, rng: np.random.Generator, max_words: int, augment_p: float) -> np.ndarray:
    """Shuffled, augmented (training) and capped word list of one token."""
    words = rng.permutation(words)
    if augment_p and len(words) > AUGMENT_MIN_WORDS and rng.random() < augment_p:
        keep = max(1, int(np.ceil(len(words) * rng.uniform(0.5, 1.0))))
        words = words[:keep]
    return words[:max_words]


def make_batch(
    sets: WordSets, tokens: np.ndarray, rng: np.random.Generator, max_words: int, augment_p: float = 0.0,
    targets: torch.Tensor | None = None,
) -> SetBatch:
    """Pad the (sampled) word lists of ``tokens``; ``targets`` rows are indexed by token id."""
    lists = [sample_words(sets.words(int(t)), rng, max_words, augment_p) for t in tokens]
    lengths = torch.tensor([len(w) for w in lists], dtype=torch.long)
    out = torch.zeros(len(lists), max(1, int(lengths.max())) if len(lists) else 1, dtype=torch.long)
    for i, w in enumerate(lists):
        out[i, : len(w)] = torch.from_numpy(w)
    tok = torch.as_tensor(np.asarray(tokens, dtype=np.int64))
    return SetBatch(out, lengths, tok, None if targets is None else targets[tok])


def split_tokens(candidates: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) token ids: a seeded random ``val_fraction`` of ``candidates`` is held out."""
    rng = np.random.default_rng([seed, 0x5E7])
    perm = rng.permutation(np.asarray(candidates, dtype=np.int64))
    n_val = int(round(len(perm) * val_fraction)) if len(perm) > 1 else 0
    n_val = min(n_val, len(perm) - 1)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


class BucketedBatches:
    """Length-bucketed batches of training tokens, deterministic from (seed, step)."""

    def __init__(self, sets: WordSets, tokens: np.ndarray, batch_size: int, seed: int, bucket_pool: int = 50):
        if len(tokens) == 0:
            raise ValueError("no training tokens")
        self.sets, self.tokens, self.seed, self.pool = sets, np.asarray(tokens), seed, bucket_pool
        self.batch_size = min(batch_size, len(tokens))
        self.per_epoch = -(-len(tokens) // self.batch_size)
        self._epoch: tuple[int, list[np.ndarray]] | None = None

    def _batches(self, epoch: int) -> list[np.ndarray]:
        if self._epoch is None or self._epoch[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch, 0xB0C])
            perm = rng.permutation(self.tokens)
            lengths = self.sets.lengths
            batches = []
            span = self.batch_size * self.pool
            for s in range(0, len(perm), span):
                pool = perm[s : s + span]
                pool = pool[np.argsort(lengths[pool], kind="stable")]
                batches += [pool[i : i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
            order = rng.permutation(len(batches))
            self._epoch = (epoch, [batches[i] for i in order])
        return self._epoch[1]

    def tokens_for(self, step: int) -> np.ndarray:
        return self._batches(step // self.per_epoch)[step % self.per_epoch]


def validation_batches(sets: WordSets, tokens: np.ndarray, config, targets: torch.Tensor | None = None, size: int = 256):
    """Fixed batches of ``tokens`` (no augmentation; a seeded word sample when a set is larger than max_words).

    ``config``: a :class:`~vocadapt.hypernet.train.HypernetConfig` (its ``seed`` and ``max_words``)."""
    order = tokens[np.argsort(sets.lengths[tokens], kind="stable")]
    rng = np.random.default_rng([config.seed, 0xE7A1])
    for s in range(0, len(order), size):
        yield make_batch(sets, order[s : s + size], rng, config.max_words, 0.0, targets)
