"""Untied head: one joint hypernetwork (input and head coordinates from one network) or two
separate ones (``--matrix input`` + ``--matrix output``)? Issue 8 asks to measure and keep the
better as the default (``HypernetConfig.matrix = "auto"`` is the joint one).

No real untied model is among the offline assets (SmolLM2 ties its head), so the model is
synthetic with something to learn: a tiny untied Llama whose input and head rows are two
different functions of each token's word-set vector (E = tanh(t A) * 0.05, O = t B * 0.02, plus
noise; t = the mean word vector of the token's words, A and B random), with an English/Russian
SentencePiece vocabulary and OFA-style multilingual vectors from the test factories. Both
set-ups get the same steps, width and batches per network; the table gives reconstruction
quality on held-out source tokens (cosine and L1 to the true rows, OFA's convex combination on
the same tokens for reference) and the training time (the separate set-up trains two networks).

    python benchmarks/hyperofa_head.py [--steps 200] [--hidden 64] [--seeds 0 1 2] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def synthetic_untied_model(work: Path, seed: int):
    """(source model dir, vectors file): rows are known functions of the tokens' word sets."""
    import factories as fx
    import method_options as mo
    import torch

    from vocadapt.init._similarity import token_vectors_from_words
    from vocadapt.init.ofa import word_sets
    from vocadapt.vectors.io import load_vectors

    texts = fx.corpus("en", 300) + fx.corpus("mixed", 100, seed=1)
    tok = fx.TOKENIZERS["sentencepiece"](texts, vocab_size=800)
    model = fx.tiny_model("llama", len(tok), False, seed=seed)
    vec = mo._ofa(work / "vec")["vectors"]
    words, mat, inc = word_sets(tok, load_vectors(vec), None, "source")
    tv, has = token_vectors_from_words(tok, words, mat, incidence=inc)
    g = torch.Generator().manual_seed(seed)
    E, O = model.get_input_embeddings().weight.data, model.get_output_embeddings().weight.data
    d, n, k = E.shape[1], tv.shape[0], int(has.sum())
    A, B = torch.randn(tv.shape[1], d, generator=g), torch.randn(tv.shape[1], d, generator=g)
    E[:n][has] = torch.tanh(tv[has] @ A) * 0.05 + 0.005 * torch.randn(k, d, generator=g)
    O[:n][has] = (tv[has] @ B) * 0.02 + 0.005 * torch.randn(k, d, generator=g)
    return fx.save_model(model, tok, work / "src"), vec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--rank", default="16")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder, removed at the end")
    args = ap.parse_args()

    from vocadapt.hypernet.train import HypernetConfig, train_hypernet

    root = args.workdir or Path(tempfile.mkdtemp(prefix="hyperofa-head-"))
    rows = []  # (seed, set-up, matrix, hyperofa cosine, L1, ofa cosine, L1, seconds)
    try:
        for seed in args.seeds:
            work = root / f"seed{seed}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            src, vec = synthetic_untied_model(work, seed)
            common = dict(vectors=vec, rank=args.rank, hidden=args.hidden, steps=args.steps, eval_every=50, patience=0,
                          max_words=32, batch_size=64, progress=False, dropout=0.1, seed=seed)
            runs = {}
            for name in ("auto", "input", "output"):
                t = time.process_time()
                r = train_hypernet(src, work / name, HypernetConfig(matrix=name, **common))
                runs[name] = (r.quality, time.process_time() - t)
            sep_s = runs["input"][1] + runs["output"][1]
            for setup, sources, secs in (("joint", {"input": "auto", "output": "auto"}, runs["auto"][1]),
                                         ("separate", {"input": "input", "output": "output"}, sep_s)):
                for matrix, run in sources.items():
                    q = runs[run][0][matrix]
                    rows.append((seed, setup, matrix, q["hyperofa"]["cosine"], q["hyperofa"]["l1"], q["ofa"]["cosine"],
                                 q["ofa"]["l1"], secs))
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)

    print(f"\nsynthetic untied Llama, {args.steps} steps, hidden {args.hidden}, rank {args.rank}, seeds {args.seeds}\n")
    print("| set-up | matrix | hyperofa cosine | hyperofa L1 | OFA cosine | OFA L1 | train CPU s (all networks) |")
    print("|---|---|---|---|---|---|---|")
    import statistics as st

    for setup in ("joint", "separate"):
        for matrix in ("input", "output"):
            sel = [r for r in rows if r[1] == setup and r[2] == matrix]
            mean = [st.mean(r[i] for r in sel) for i in range(3, 8)]
            print(f"| {setup} | {matrix} | {mean[0]:.4f} | {mean[1]:.5f} | {mean[2]:.4f} | {mean[3]:.5f} | {mean[4]:.1f} |")
    print("\nper seed (cosine, hyperofa):")
    for seed in args.seeds:
        cells = [f"{s}/{m} {r[3]:.4f}" for s in ("joint", "separate") for m in ("input", "output")
                 for r in rows if r[0] == seed and r[1] == s and r[2] == m]
        print(f"  seed {seed}: " + ", ".join(cells))


if __name__ == "__main__":
    main()
