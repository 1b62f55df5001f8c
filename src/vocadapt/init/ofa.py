"""``ofa`` (Liu et al. 2024): factorized embeddings, multilingual word vectors, top-k in coordinates.

1. Factorize the source matrix: E_s ~ F_s P with coordinates F_s = U_k (|V_s| x k) and
   primitives P = diag(S_k) V_k^T (k x d), k in {100, 200, 400} or ``full`` (no factorization).
   We factorize through the d x d Gram matrix (E^T E = V S^2 V^T, accumulated in blocks in
   float64), so memory stays |V| x k even for 250k-token vocabularies.
2. Token vectors in one *multilingual* word-vector space (keys ``lang:word``): the plain mean of
   the vectors of all words whose tokenization contains the token, each word tokenized four
   ways (``w``, `` w``, ``W``, `` W``), for both tokenizers.
3. A new token with a vector: top-k source tokens by cosine, w = softmax(sim / T), coordinates
   F_t = sum_i w_i F_s[i]; its row is F_t P. Tokens without a vector get the random fallback.

The model is written multiplied out (``F_t P``; Hugging Face causal LMs have no factorized
embedding layer). ``--keep-factorized FILE`` also writes F_t for every target token and P to a
safetensors file (``FILE`` for the input matrix, ``FILE`` with ``-output`` before the suffix
for an untied head).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vocadapt.errors import VocadaptError
from vocadapt.init.context import InitContext, Rows
from vocadapt.init.registry import register
from vocadapt.init.wechsel import SimilarityPlan, nearest_plan


@dataclass
class OfaConfig:
    vectors: str | None = field(default=None, metadata={"help": "multilingual word vectors with 'lang:word' keys (e.g. from `vocadapt vectors align --multilingual`)"})
    rank: str = field(default="100", metadata={"help": "factorization rank: 100, 200, 400 (any positive integer) or full"})
    top_k: int = field(default=10, metadata={"help": "number of nearest source tokens mixed per new token"})
    temperature: float = field(default=0.1, metadata={"help": "softmax temperature over cosine similarities"})
    source_langs: list[str] | None = field(default=None, metadata={"help": "languages whose words give source token vectors (default: all keys, as OFA)"})
    target_langs: list[str] | None = field(default=None, metadata={"help": "languages whose words give target token vectors (default: all keys)"})
    keep_factorized: str | None = field(default=None, metadata={"help": "also write the factorized form (coordinates F_t, primitives P) to this .safetensors file"})

    def __post_init__(self) -> None:
        if self.rank != "full" and not (str(self.rank).isdigit() and int(self.rank) > 0):
            raise ValueError(f"rank must be a positive integer or 'full', not {self.rank!r}")
        if self.top_k < 1 or not self.temperature > 0:
            raise ValueError("top_k must be >= 1 and temperature > 0")
        if self.keep_factorized and self.rank == "full":
            raise ValueError("keep_factorized needs a factorization rank, not 'full'")


def factorize(source: torch.Tensor, rank: int, block: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """(F (n x k) float32, P (k x d) float32) with F P the best rank-k approximation of source.

    Through the Gram matrix: E^T E = V S^2 V^T; P = S_k V_k^T; F = E V_k S_k^-1 (= U_k).
    """
    n, d = source.shape
    k = min(rank, d, n)
    gram = torch.zeros(d, d, dtype=torch.float64)
    for s in range(0, n, block):
        b = source[s : s + block].to(torch.float64)
        gram += b.T @ b
    evals, evecs = torch.linalg.eigh(gram)  # ascending
    order = torch.argsort(evals, descending=True)[:k]
    sv = evals[order].clamp_min(0).sqrt()
    vk = evecs[:, order]  # (d, k)
    keep = sv > sv.max() * 1e-7  # drop numerically null directions (rank-deficient source)
    sv, vk = sv[keep], vk[:, keep]
    proj = (vk / sv).float()  # (d, k): E @ proj = U_k
    f = torch.empty(n, len(sv))
    for s in range(0, n, block):
        f[s : s + block] = source[s : s + block].float() @ proj
    p = (sv[:, None] * vk.T).float()
    return f, p


def word_sets(tokenizer, wv, langs: list[str] | None, what: str, method: str = "ofa"):
    """(words of ``langs``, their (n, dim) vectors, the (vocab x words) incidence) for one tokenizer.

    OFA's word sets: row t of the incidence lists the words (keys of ``langs``, prefix stripped,
    each tokenized four ways) whose tokenization contains token t. OFA averages their vectors;
    HyperOFA feeds them to its hypernetwork.
    """
    from vocadapt.init._similarity import log, word_incidence

    side = wv.select_languages(langs)
    if not len(side):
        raise VocadaptError(f"{method}: no words of languages {langs} in {wv.source} for the {what} tokenizer (languages present: {sorted(wv.languages())})")
    words = [w.replace("$", " ") for w in side.words]  # ColexNet marks multi-word keys with '$'
    inc = word_incidence(tokenizer, words, None, capitalized=True, desc=f"{method}: {what} word sets ({len(words)} words)")
    has = np.diff(inc.indptr) > 0
    log.info("%s: %s tokens with a vector: %d/%d (from %d words)", method, what, int(has.sum()), len(has), len(words))
    return words, side.matrix, inc


def ofa_plan(ctx: InitContext, config: OfaConfig) -> SimilarityPlan:
    from vocadapt.init._similarity import token_vectors_from_words
    from vocadapt.progress import step
    from vocadapt.vectors.io import load_vectors

    if not config.vectors:
        raise VocadaptError(
            "ofa needs multilingual word vectors: give --vectors FILE (keys 'lang:word'; "
            "`vocadapt vectors align SRC TGT --dictionary D --multilingual --out FILE` makes one)"
        )
    step(f"ofa: loading word vectors {config.vectors}")
    wv = load_vectors(config.vectors)
    sides = []
    for tok, langs, what in ((ctx.source_tokenizer, config.source_langs, "source"), (ctx.target_tokenizer, config.target_langs, "target")):
        words, matrix, inc = word_sets(tok, wv, langs, what)
        sides.append(token_vectors_from_words(tok, words, matrix, incidence=inc))
    (sv, sh), (tv, th) = sides
    return nearest_plan(ctx, sv, sh, tv, th, config.top_k, config.temperature, "ofa")


@register("ofa", config=OfaConfig, paper="Liu, Lin, Ma, Schütze 2024, OFA (NAACL Findings)", extras=("vectors",))
def ofa_init(ctx: InitContext, source: torch.Tensor, config: OfaConfig) -> Rows:
    """Top-k softmax mix in SVD coordinate space, similarities from multilingual word vectors (OFA)."""
    from vocadapt.init._similarity import plan_rows, sparse_combine

    plan: SimilarityPlan = ctx.cached("ofa/plan", lambda: ofa_plan(ctx, config))
    if config.rank == "full":
        return plan_rows(source, plan.index, plan.weights, plan.ok)
    from vocadapt.progress import step

    step(f"ofa: factorizing the {ctx.matrix} embedding ({source.shape[0]} x {source.shape[1]}) at rank {config.rank}")
    f, p = factorize(source, int(config.rank))
    coords = sparse_combine(f, plan.index, plan.weights)  # (n_new, k)
    if config.keep_factorized:
        _write_factorized(ctx, f, p, coords, plan.ok, config.keep_factorized)
    return Rows(coords @ p, plan.ok.clone())


def _write_factorized(ctx: InitContext, f: torch.Tensor, p: torch.Tensor, coords: torch.Tensor, ok: torch.Tensor, path: str) -> None:
    """F_t for every target id (copies: F_s rows; computed; fallback: N(mean, std) of F_s) and P."""
    from safetensors.torch import save_file

    from vocadapt.init.context import random_rows

    a = ctx.alignment
    ft = torch.zeros(a.target_size, f.shape[1])
    copied = torch.as_tensor(a.copied_ids, dtype=torch.long)
    ft[copied] = f[torch.as_tensor(a.copy_from[a.copied_ids], dtype=torch.long)]
    new = torch.as_tensor(ctx.new_ids, dtype=torch.long)
    c = coords.clone()
    if (~ok).any():
        c[~ok] = random_rows(f, int((~ok).sum()), ctx.generator(f"ofa/factorized/{ctx.matrix}"))
    ft[new] = c
    dest = Path(path)
    if ctx.matrix != "input":
        dest = dest.with_name(f"{dest.stem}-{ctx.matrix}{dest.suffix or '.safetensors'}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_file({"coordinates": ft.contiguous(), "primitives": p.contiguous()}, str(dest))
