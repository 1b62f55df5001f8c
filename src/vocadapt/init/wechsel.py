"""``wechsel`` (Minixhofer et al. 2022): nearest source tokens in aligned static word-vector spaces.

1. Source- and target-language word vectors; the source space is mapped onto the target space
   by orthogonal Procrustes on a bilingual dictionary (``vocadapt.vectors.align``).
2. A vector for every token of both tokenizers: fastText's n-gram vector of the token's text
   when the vectors are a fastText ``.bin`` (the paper's choice), otherwise the
   frequency-weighted mean of the vectors of the words whose tokenization contains the token
   (the reference's ``use_subword_info=False`` path).
3. A new target token with a vector gets the top-k source tokens by cosine, weights
   softmax(sim / T) (k = 10, T = 0.1 in the paper), row = sum_i w_i E_s[i].

The weights are computed once (blocked top-k, never a dense target x source matrix) and
reused for the untied head.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from vocadapt.errors import VocadaptError
from vocadapt.init.context import InitContext, Rows
from vocadapt.init.registry import register


@dataclass
class WechselConfig:
    source_vectors: str | None = field(default=None, metadata={"help": "word vectors of the source language (fastText .bin/.vec, word2vec, gensim, navec)"})
    target_vectors: str | None = field(default=None, metadata={"help": "word vectors of the target language"})
    dictionary: str | None = field(default=None, metadata={"help": "bilingual dictionary (source<TAB>target lines, or dictd .dict.dz); omit if the spaces are already aligned"})
    top_k: int = field(default=10, metadata={"help": "number of nearest source tokens mixed per new token"})
    temperature: float = field(default=0.1, metadata={"help": "softmax temperature over cosine similarities"})
    source_lang: str | None = field(default=None, metadata={"help": "keep only keys 'LANG:word' of the source file (multilingual files)"})
    target_lang: str | None = field(default=None, metadata={"help": "keep only keys 'LANG:word' of the target file"})
    subword_info: str = field(default="auto", metadata={"help": "auto: fastText n-grams when the vectors are a fastText .bin, else words containing the token; words: always the latter"})
    normalize_alignment: bool = field(default=True, metadata={"help": "fit Procrustes on unit-length vectors (the reference uses raw vectors)"})

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, not {self.top_k}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, not {self.temperature}")
        if self.subword_info not in ("auto", "words"):
            raise ValueError(f"subword_info must be 'auto' or 'words', not {self.subword_info!r}")


@dataclass
class SimilarityPlan:
    index: torch.Tensor  # (n_new, k) source ids
    weights: torch.Tensor  # (n_new, k)
    ok: torch.Tensor  # (n_new,)
    stats: dict


def token_vectors(tokenizer, wv, *, subword_info: str, weighted: bool, capitalized: bool = False,
                  desc: str = "token vectors from words"):
    """(vocab x dim) vectors and mask for a tokenizer's tokens in the space of ``wv``."""
    from vocadapt.init._similarity import token_vectors_from_subwords, token_vectors_from_words

    if subword_info == "auto" and wv.has_subword_info:
        return token_vectors_from_subwords(tokenizer, wv.fasttext_model)
    return token_vectors_from_words(
        tokenizer, wv.words, wv.matrix, wv.counts if weighted else None, capitalized=capitalized, desc=desc
    )


def nearest_plan(
    ctx: InitContext,
    src_vecs: torch.Tensor,
    src_has: torch.Tensor,
    tgt_vecs: torch.Tensor,
    tgt_has: torch.Tensor,
    top_k: int,
    temperature: float,
    method: str,
) -> SimilarityPlan:
    """Top-k softmax weights from each new target token's vector to all source token vectors."""
    from vocadapt.init._similarity import check_signal, topk_softmax
    from vocadapt.tokenizer.canonical import special_ids

    specials = special_ids(ctx.source_tokenizer)
    cand = torch.nonzero(src_has).flatten()
    if specials:
        cand = cand[~torch.isin(cand, torch.as_tensor(sorted(specials)))]
    if len(cand) == 0:
        raise VocadaptError(f"{method}: no source token has a word vector: do the source vectors match the source model's language?")
    new = torch.as_tensor(ctx.new_ids, dtype=torch.long)
    ok = tgt_has[new] if len(new) else torch.zeros(0, dtype=torch.bool)
    idx, w = topk_softmax(tgt_vecs[new[ok]], src_vecs[cand], top_k, temperature)
    k = idx.shape[1]
    index = torch.zeros(len(new), k, dtype=torch.long)
    weights = torch.zeros(len(new), k)
    index[ok] = cand[idx]
    weights[ok] = w
    check_signal(method, len(new), ok, "no word in the target vectors contains the token")
    stats = {"source_tokens_with_vector": len(cand), "new_with_vector": int(ok.sum())}
    return SimilarityPlan(index, weights, ok, stats)


def wechsel_plan(ctx: InitContext, config: WechselConfig) -> SimilarityPlan:
    from vocadapt.init._similarity import log
    from vocadapt.vectors.align import fit_alignment, read_dictionary
    from vocadapt.vectors.io import load_vectors

    missing = [f"--{n.replace('_', '-')}" for n in ("source_vectors", "target_vectors") if not getattr(config, n)]
    if missing:
        raise VocadaptError(
            f"wechsel needs word vectors of both languages: give {' and '.join(missing)} "
            "(and --dictionary to align them; see `vocadapt vectors align`)"
        )
    from vocadapt.progress import step

    step(f"wechsel: loading word vectors {config.source_vectors} and {config.target_vectors}")
    src = load_vectors(config.source_vectors, lang=config.source_lang)
    tgt = load_vectors(config.target_vectors, lang=config.target_lang)
    if src.dim != tgt.dim:
        raise VocadaptError(
            f"wechsel: source vectors have dimension {src.dim} but target vectors {tgt.dim}; they must match to be aligned"
        )
    src_vecs, src_has = token_vectors(ctx.source_tokenizer, src, subword_info=config.subword_info, weighted=True,
                                      desc="wechsel: source token vectors from source words")
    tgt_vecs, tgt_has = token_vectors(ctx.target_tokenizer, tgt, subword_info=config.subword_info, weighted=True,
                                      desc="wechsel: target token vectors from target words")
    report: dict = {}
    if config.dictionary:
        w, report = fit_alignment(src, tgt, read_dictionary(config.dictionary), normalize=config.normalize_alignment)
        src_vecs = src_vecs @ torch.from_numpy(w)
        log.info("wechsel: aligned on %d dictionary pairs (mean cosine %.3f)", report["pairs_used"], report["mean_pair_cosine"])
    log.info(
        "wechsel: vectors for %d/%d source and %d/%d target tokens", int(src_has.sum()), len(src_has), int(tgt_has.sum()), len(tgt_has)
    )
    plan = nearest_plan(ctx, src_vecs, src_has, tgt_vecs, tgt_has, config.top_k, config.temperature, "wechsel")
    plan.stats.update(report)
    return plan


@register("wechsel", config=WechselConfig, paper="Minixhofer, Paischer & Rekabsaz 2022, WECHSEL (NAACL)", extras=("vectors",))
def wechsel_init(ctx: InitContext, source: torch.Tensor, config: WechselConfig) -> Rows:
    """Top-k softmax mix of nearest source tokens in Procrustes-aligned word-vector spaces (WECHSEL)."""
    from vocadapt.init._similarity import plan_rows

    plan: SimilarityPlan = ctx.cached("wechsel/plan", lambda: wechsel_plan(ctx, config))
    return plan_rows(source, plan.index, plan.weights, plan.ok)
