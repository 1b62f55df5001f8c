"""Shared machinery of the similarity-based methods (FOCUS, WECHSEL, OFA).

* :func:`sparsemax` and :func:`sparsemax_topk` — FOCUS's weights over all anchors;
* :func:`topk_softmax` — WECHSEL/OFA's top-k softmax(sim / T) over source tokens;
* :func:`sparse_combine` — rows as weighted sums of a few source rows, vectorized;
* :func:`word_incidence` — which words contain each token (OFA's and HyperOFA's word sets);
* :func:`token_vectors_from_words` / :func:`token_vectors_from_subwords` — a vector per token
  from static word vectors: the (weighted) mean of the vectors of the words whose tokenization
  contains the token, or fastText's n-gram vector of the token's text.

Everything works on blocks of query rows, so the (queries x keys) similarity matrix is never
whole in memory: with 250k x 250k tokens a block is ``block_elements`` floats (64 MB default).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

log = logging.getLogger("vocadapt")

BLOCK_ELEMENTS = 1 << 24  # similarity entries per block (16M floats = 64 MB)


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def sparsemax(z: torch.Tensor) -> torch.Tensor:
    """Row-wise sparsemax (Martins & Astudillo 2016): Euclidean projection onto the simplex.

    p = max(z - tau, 0) with tau from the largest k such that 1 + k z_(k) > sum_{j<=k} z_(j).
    """
    zs, _ = torch.sort(z, dim=-1, descending=True)
    ks = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype, device=z.device)
    cums = zs.cumsum(-1)
    support = (1 + ks * zs) > cums
    k = support.sum(-1, keepdim=True).clamp_min(1)
    tau = (cums.gather(-1, k - 1) - 1) / k.to(z.dtype)
    return (z - tau).clamp_min(0)


def sparsemax_topk(z: torch.Tensor, k: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact sparsemax of each row of z (n, m), returned sparsely as (indices, weights) (n, k').

    Sparsemax's support is usually a handful of entries, so it is computed on the top k values;
    that is exact whenever the support found is smaller than k (the support condition is
    monotone in rank). Rows whose support fills the top k are redone on the full row.
    """
    n, m = z.shape
    if m <= k:
        w = sparsemax(z)
        idx = torch.arange(m).expand(n, m)
        return idx.contiguous(), w
    vals, idx = torch.topk(z, k, dim=-1)
    w = sparsemax(vals)
    full = (w > 0).sum(-1) >= k  # support may continue past the top k: recompute exactly
    if full.any():
        rows = torch.nonzero(full).flatten()
        wf = sparsemax(z[rows])
        kk = int((wf > 0).sum(-1).max())
        wv, wi = torch.topk(wf, kk, dim=-1)
        width = max(k, kk)
        pad_i = torch.zeros(n, width, dtype=torch.long)
        pad_w = torch.zeros(n, width, dtype=z.dtype)
        pad_i[:, :k], pad_w[:, :k] = idx, w
        pad_i[rows], pad_w[rows] = 0, 0
        pad_i[rows, :kk], pad_w[rows, :kk] = wi, wv
        idx, w = pad_i, pad_w
    return idx, w


def block_rows(n_keys: int, block_elements: int = BLOCK_ELEMENTS) -> int:
    return max(1, min(8192, block_elements // max(n_keys, 1)))


def _similarity_blocks(q: torch.Tensor, kn: torch.Tensor, step: int):
    """(start, q[start:start+step] @ kn.T) for each block of queries, every block written into
    one reused buffer: a fresh 64 MB result per block costs page faults and memory traffic
    that were a sixth of WECHSEL's similarity time. Same kernel, same values as ``q @ kn.T``;
    a block is only valid until the next one is produced."""
    if len(q) == 0:
        return
    buf = torch.empty(min(step, len(q)), len(kn), dtype=q.dtype)
    for s in range(0, len(q), step):
        x = q[s : s + step]
        out = buf[: len(x)]
        torch.mm(x, kn.T, out=out)
        yield s, out


def sparsemax_weights(
    queries: torch.Tensor, keys: torch.Tensor, block_elements: int = BLOCK_ELEMENTS
) -> tuple[torch.Tensor, torch.Tensor]:
    """FOCUS weights: sparsemax(cos(query, every key)) per query, as (indices, weights) into keys."""
    q, kn = _normalize(queries.float()), _normalize(keys.float())
    out_i, out_w = [], []
    step = block_rows(len(kn), block_elements)
    for s, sims in _similarity_blocks(q, kn, step):
        i, w = sparsemax_topk(sims)
        out_i.append(i)
        out_w.append(w)
    width = max((t.shape[1] for t in out_i), default=1)
    pad = lambda t: torch.nn.functional.pad(t, (0, width - t.shape[1]))  # noqa: E731
    return torch.cat([pad(t) for t in out_i]) if out_i else torch.zeros(0, 1, dtype=torch.long), (
        torch.cat([pad(t) for t in out_w]) if out_w else torch.zeros(0, 1)
    )


def topk_softmax(
    queries: torch.Tensor,
    keys: torch.Tensor,
    top_k: int = 10,
    temperature: float = 0.1,
    block_elements: int = BLOCK_ELEMENTS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """WECHSEL/OFA weights: the top-k keys by cosine, w = softmax(sim / temperature)."""
    q, kn = _normalize(queries.float()), _normalize(keys.float())
    k = min(top_k, len(kn))
    out_i, out_w = [], []
    step = block_rows(len(kn), block_elements)
    for s, sims in _similarity_blocks(q, kn, step):
        vals, idx = torch.topk(sims, k, dim=-1)
        out_i.append(idx)
        out_w.append(torch.softmax(vals / temperature, dim=-1))
    if not out_i:
        return torch.zeros(0, k, dtype=torch.long), torch.zeros(0, k)
    return torch.cat(out_i), torch.cat(out_w)


def plan_rows(source: torch.Tensor, index: torch.Tensor, weights: torch.Tensor, ok: torch.Tensor) -> Any:
    """:class:`~vocadapt.init.context.Rows` for the new tokens marked ``ok`` only: their sparse
    weighted sums (row i of ``index``/``weights`` is new token i). Tokens without a signal get no
    float32 row at all; each computed row is the one :func:`sparse_combine` gives on all rows."""
    from vocadapt.init.context import Rows

    return Rows.subset(sparse_combine(source, index[ok], weights[ok]), ok)


def sparse_combine(source: torch.Tensor, index: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """out[i] = sum_j weights[i, j] * source[index[i, j]] in float32, skipping zero weights
    (sparsemax leaves most of the top-k at zero)."""
    from vocadapt.init.context import weighted_row_sums

    nz = weights != 0
    rows = torch.nonzero(nz, as_tuple=True)[0]
    return weighted_row_sums(source, rows, index[nz], weights[nz], index.shape[0])


# ------------------------------------------------------------------------------------------------
# Token vectors from word vectors
# ------------------------------------------------------------------------------------------------


def word_variants(word: str, capitalized: bool) -> list[str]:
    """The spellings a word is tokenized in: as is and word-initial; OFA adds capitalized forms."""
    out = [word, " " + word]
    if capitalized and word[:1].islower():
        cap = word[:1].upper() + word[1:]
        out += [cap, " " + cap]
    return out


def word_incidence(
    tokenizer: Any,
    words: Sequence[str],
    counts: np.ndarray | None = None,
    *,
    capitalized: bool = False,
    batch: int = 50_000,
    desc: str = "word sets",
) -> Any:
    """(vocab x words) scipy CSR incidence: entry (t, w) when a spelling of word w contains token t.

    The entry is ``counts[w]`` (WECHSEL's frequency weights) or 1 (``counts=None``); a word
    counts once per token however many of its spellings (:func:`word_variants`) contain it.
    Words are tokenized by the fast tokenizer in batches, with no special tokens and no added
    prefix space (so ``w`` and `` w`` give mid-word and word-start pieces); special and unknown
    tokens get no words. Row t's column indices are the word set of token t, which OFA averages
    (:func:`token_vectors_from_words`) and HyperOFA's hypernetwork reads as a sequence.
    """
    from scipy import sparse
    from tokenizers import Encoding

    from vocadapt.progress import bar

    from vocadapt.tokenizer.align import RawEncoder
    from vocadapt.tokenizer.canonical import special_ids, vocab_size

    enc = RawEncoder(tokenizer)
    n_vocab = vocab_size(tokenizer)
    skip = special_ids(tokenizer) | ({enc.unk_id} if enc.unk_id is not None else set())
    # encode_batch_fast: the same ids without character offsets (which are never read here)
    encode = getattr(enc.backend, "encode_batch_fast", enc.backend.encode_batch)
    rows_list, cols_list = [], []
    progress = bar(total=len(words), desc=desc, unit="word", unit_scale=True)
    for s in range(0, len(words), batch):
        chunk = words[s : s + batch]
        progress.update(len(chunk))
        if capitalized:
            texts, owner_list = [], []
            for j, w in enumerate(chunk):
                for v in word_variants(w, capitalized):
                    texts.append(v)
                    owner_list.append(s + j)
            owner = np.asarray(owner_list, dtype=np.int64)
        else:  # the two spellings of word_variants, built in one pass
            texts = [v for w in chunk for v in (w, " " + w)]
            owner = np.repeat(np.arange(s, s + len(chunk), dtype=np.int64), 2)
        encs = encode(texts, add_special_tokens=False)
        lens = np.fromiter(map(len, encs), dtype=np.int64, count=len(encs))
        # one merged Encoding: its ids come back as one list, not half a million small ones
        ids = Encoding.merge(encs, growing_offsets=False).ids if encs else []
        rows_list.append(np.asarray(ids, dtype=np.int64))
        cols_list.append(np.repeat(owner, lens))
    progress.close()
    tok = np.concatenate(rows_list) if rows_list else np.zeros(0, np.int64)
    word = np.concatenate(cols_list) if cols_list else np.zeros(0, np.int64)
    keep = (tok >= 0) & (tok < n_vocab)
    if skip:
        skipped = np.zeros(n_vocab, dtype=bool)
        skipped[[t for t in skip if 0 <= t < n_vocab]] = True
        keep &= ~skipped[np.where(keep, tok, 0)]
    tok, word = tok[keep], word[keep]
    key = tok * len(words) + word
    key.sort()  # unique (token, word) pairs, sorted by token then word: what np.unique gives
    key = key[np.concatenate(([True], key[1:] != key[:-1]))] if len(key) else key
    tok, word = key // len(words), key % len(words)
    w = np.ones(len(tok)) if counts is None else np.asarray(counts, dtype=np.float64)[word]
    return sparse.csr_matrix((w, (tok, word)), shape=(n_vocab, len(words)))


def token_vectors_from_words(
    tokenizer: Any,
    words: Sequence[str],
    vectors: np.ndarray,
    counts: np.ndarray | None = None,
    *,
    capitalized: bool = False,
    incidence: Any = None,
    desc: str = "token vectors from words",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(vocab x dim) token vectors and a (vocab,) mask of tokens that got one.

    A token's vector is the mean of the vectors of all words whose tokenization (of any variant,
    see :func:`word_variants`) contains it, weighted by ``counts`` (WECHSEL) or uniformly (OFA,
    ``counts=None``). ``incidence``: the :func:`word_incidence` of these words when the caller
    already has it (HyperOFA builds it once for its word sets and OFA's comparison). ``desc``
    labels the progress bar (which method, which side).
    """
    from scipy import sparse

    inc = word_incidence(tokenizer, words, counts, capitalized=capitalized, desc=desc) if incidence is None else incidence
    totals = np.asarray(inc.sum(1)).ravel()
    has = totals > 0
    # Normalize rows in float64, then multiply in float32: a float64 copy of 250k x 300 word
    # vectors would cost 600 MB and a second of copying for no visible precision.
    inc = (sparse.diags(np.where(has, 1.0 / np.where(has, totals, 1.0), 0.0)) @ inc).astype(np.float32)
    out = np.asarray(inc @ np.asarray(vectors, dtype=np.float32), dtype=np.float32)
    return torch.from_numpy(out), torch.from_numpy(has)


def token_texts(tokenizer: Any) -> list[str | None]:
    """Each id's decoded text (word marker removed, invalid UTF-8 replaced); None for specials."""
    from vocadapt.tokenizer.canonical import canonical_vocab

    return [None if t is None else t.text.decode("utf-8", "replace").strip() for t in canonical_vocab(tokenizer)]


def token_vectors_from_subwords(tokenizer: Any, fasttext_model: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """fastText vector of each token's text (n-grams for unseen strings); zero vectors: no signal."""
    texts = token_texts(tokenizer)
    dim = fasttext_model.get_dimension()
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, t in enumerate(texts):
        if t:
            out[i] = fasttext_model.get_word_vector(t)
    has = np.abs(out).sum(1) > 0
    return torch.from_numpy(out), torch.from_numpy(has)


def check_signal(method: str, n_new: int, ok: torch.Tensor, why: str, suggestion: str = "mean") -> None:
    """Never a silent all-random init: raise when nothing got a signal, warn when most did not."""
    from vocadapt.errors import VocadaptError

    got = int(ok.sum())
    if n_new and got == 0:
        raise VocadaptError(f"{method}: none of the {n_new} new tokens has a signal ({why}); try --method {suggestion}")
    if n_new and got < n_new / 2:
        log.warning(
            "%s: %d of %d new tokens have no signal (%s) and get the fallback (random noise, or the FVT mean with --fallback mean)",
            method, n_new - got, n_new, why,
        )
    log.info("%s: %d of %d new tokens computed, %d fallback", method, got, n_new, n_new - got)
