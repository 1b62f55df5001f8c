"""Ours vs the reference FOCUS (pip ``deepfocus``) and WECHSEL (pip ``wechsel``) on the same inputs.

Reports, per method: agreement over the new tokens our method computed (mean cosine between
our row and the reference's, share of rows equal within 1e-4 max-abs), and wall time and peak
RSS of each run. Every run is its own subprocess (peak RSS: the kernel's ``VmHWM`` of it);
timing starts once the tokenizers and the source embedding are loaded and covers equal work on
both sides: the whole target matrix (vectors loading, similarities, weights, the computed rows,
the copied overlap rows and random rows for tokens without a signal), which is what the
reference functions return and what ``vocadapt init`` assembles.

Shared inputs are prepared once, outside the timings, so both sides see identical data:
  * FOCUS: one fastText model trained by ``vocadapt vectors train`` on the Russian training
    text; deepfocus gets it as ``fasttext_model_path``, ours as ``--aux-vectors``.
  * WECHSEL: English word2vec and Russian navec (exported to word2vec binary), and the mueller7
    dictionary written as ``en<TAB>ru`` lines; ours runs with ``normalize_alignment=False`` to
    match the reference's Procrustes on raw vectors.

The reference packages need heavy dependencies they never use on this path (``datasets``);
install them elsewhere (``pip install --no-deps --target DIR deepfocus wechsel entmax fastdist
numba llvmlite scikit-learn threadpoolctl joblib nltk cloudpickle narwhals print-on-steroids``)
and pass ``--reference-path DIR``; ``datasets`` is stubbed in the reference subprocesses.

    PYTHONPATH=src python benchmarks/reference_agreement.py --target-tokenizer /tmp/ru_tok \
        --reference-path /tmp/simref/site --workdir /tmp/sim/bench
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def _load_common(model: str, target: str):
    from safetensors.torch import load_file

    from vocadapt.tokenizer.load import load_tokenizer
    from vocadapt.io.checkpoint import Checkpoint

    ckpt = Checkpoint(model)
    src_tok = load_tokenizer(ckpt.path)
    tgt_tok = load_tokenizer(target)
    emb = ckpt.read(ckpt.vocab.input).float()
    del load_file
    return src_tok, tgt_tok, emb


def method_matrix(side: str, method: str, src_tok, tgt_tok, emb, inp: dict, full: bool = False, fallback: str = "random"):
    """One method's target rows as a (target vocab x d) float32 array.

    ``side`` "ours" or "ref". For ours, only the rows the method computed are filled (NaN
    elsewhere) unless ``full``: then the whole matrix as ``vocadapt init`` assembles it (copies,
    computed rows, ``fallback`` for the others), comparable with the reference's full output.
    """
    import numpy as np

    if side == "ref":
        import types

        for name in ("datasets", "datasets.fingerprint", "datasets.load"):
            sys.modules.setdefault(name, types.ModuleType(name))
        sys.modules["datasets"].load_dataset = sys.modules["datasets.load"].load_dataset = None
        sys.modules["datasets.fingerprint"].Hasher = None
    if side == "ours":
        computed, matrix = ours_matrix(method, src_tok, tgt_tok, emb, inp, fallback)
        if full:
            return matrix
        out = np.full_like(matrix, np.nan)
        out[computed] = matrix[computed]
        return out
    if method == "focus":
        from deepfocus import FOCUS

        return FOCUS(
            source_embeddings=emb, source_tokenizer=src_tok, target_tokenizer=tgt_tok,
            fasttext_model_path=inp["fasttext"], verbosity="silent",
        ).numpy()
    from gensim.models import KeyedVectors, Word2Vec
    from wechsel import WECHSEL

    def w2v(path):
        m = Word2Vec(vector_size=300)
        m.wv = KeyedVectors.load_word2vec_format(path, binary=True)
        return m

    w = WECHSEL(w2v(inp["en"]), w2v(inp["ru"]), bilingual_dictionary=inp["dict"])
    out, _ = w.apply(src_tok, tgt_tok, emb.numpy(), use_subword_info=False)
    return out


def ours_matrix(method: str, src_tok, tgt_tok, emb, inp: dict, fallback: str = "random"):
    """(bool mask of the target ids our method computed a row for, the whole float32 matrix as
    ``vocadapt init`` assembles it: copies, computed rows, ``fallback`` for the others)."""
    import numpy as np

    from vocadapt.init.context import InitContext
    from vocadapt.init.core import _assemble
    from vocadapt.init.registry import get_method
    from vocadapt.tokenizer.align import align_vocabularies

    options = (
        {"aux_vectors": inp["fasttext"]}
        if method == "focus"
        else {"source_vectors": inp["en"], "target_vectors": inp["ru"], "dictionary": inp["dict"], "normalize_alignment": False}
    )
    spec = get_method(method)
    ctx = InitContext(src_tok, tgt_tok, align_vocabularies(src_tok, tgt_tok), seed=0)
    rows = spec.fn(ctx, emb, spec.make_config(options))
    matrix = _assemble(emb, ctx, rows, ctx.alignment.target_size, "fallback/input", fallback)[0].float().numpy()
    computed = np.zeros(len(matrix), dtype=bool)
    pos = rows.positions.numpy()  # rows may cover only the tokens with a signal
    computed[ctx.new_ids[pos[rows.ok.numpy()[pos]]]] = True
    return computed, matrix


def child(args: argparse.Namespace) -> None:
    """One timed run; writes rows for every target id (npy) and {seconds, peak_rss_mb} (json)."""
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    src_tok, tgt_tok, emb = _load_common(args.model, args.target)
    inputs = json.loads(args.inputs)
    t0 = time.perf_counter()
    if args.side == "ours":  # the whole matrix, as the reference returns it: equal work timed
        computed, out = ours_matrix(args.method, src_tok, tgt_tok, emb, inputs)
    else:
        out = method_matrix(args.side, args.method, src_tok, tgt_tok, emb, inputs)
    seconds = time.perf_counter() - t0
    if args.side == "ours":
        np.save(args.out + ".computed.npy", computed)
    np.save(args.out + ".npy", np.asarray(out, dtype=np.float32))
    Path(args.out + ".json").write_text(json.dumps({"seconds": seconds, "peak_rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux keeps ``ru_maxrss`` across fork and exec, so
    in a child it is at least the parent's size when it forked (the parent here has loaded word
    vectors to prepare the inputs); ``VmHWM`` belongs to this process's own address space."""
    import resource

    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prepare(work: Path, target: str, shared: Path | None = None) -> dict[str, str]:
    """Inputs for both sides: fastText on the Russian text tokenized by ``target`` (in ``work``),
    navec as word2vec binary and the dictionary as TSV (in ``shared``, default ``work``)."""
    from vocadapt import assets
    from vocadapt.tokenizer.load import load_tokenizer
    from vocadapt.vectors.align import read_dictionary
    from vocadapt.vectors.io import load_vectors, save_vectors
    from vocadapt.vectors.train import train_token_vectors

    shared = shared or work
    for d in (work, shared):
        d.mkdir(parents=True, exist_ok=True)
    inp = {"fasttext": str(work / "aux_fasttext.bin"), "en": str(assets.english_vectors()), "ru": str(shared / "navec.bin"), "dict": str(shared / "en_ru.tsv")}
    if not Path(inp["fasttext"]).exists():
        train_token_vectors([assets.russian_text() / "train.txt"], load_tokenizer(target), inp["fasttext"], threads=2)
    if not Path(inp["ru"]).exists():
        save_vectors(load_vectors(assets.russian_vectors()), inp["ru"])
    if not Path(inp["dict"]).exists():
        pairs = read_dictionary(assets.en_ru_dictionary())
        Path(inp["dict"]).write_text("".join(f"{a}\t{b}\n" for a, b in pairs), encoding="utf-8")
    return inp


def run(side: str, method: str, args, inp, ref_path: str | None) -> tuple[dict, object, object]:
    """(timing, the whole target matrix, mask of the rows our method computed or None)."""
    import numpy as np

    out = str(Path(args.workdir) / f"{method}-{side}")
    env = dict(os.environ, TQDM_DISABLE="1", OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads), NUMBA_NUM_THREADS=str(args.threads))
    paths = [str(HERE.parents[1] / "src")] + ([ref_path] if side == "ref" and ref_path else [])
    env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")])
    cmd = [sys.executable, str(HERE), "--child", "--side", side, "--method", method, "--model", args.model,
           "--target", args.target_tokenizer, "--inputs", json.dumps(inp), "--out", out, "--threads", str(args.threads)]
    subprocess.run(cmd, env=env, check=True)
    computed = np.load(out + ".computed.npy") if side == "ours" else None
    return json.loads(Path(out + ".json").read_text()), np.load(out + ".npy"), computed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--target-tokenizer", default="/tmp/ru_tok")
    ap.add_argument("--reference-path", default=None)
    ap.add_argument("--workdir", default="/tmp/vocadapt-bench")
    ap.add_argument("--methods", nargs="+", default=["focus", "wechsel"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--side"), ap.add_argument("--method"), ap.add_argument("--target"), ap.add_argument("--inputs"), ap.add_argument("--out")
    args = ap.parse_args()
    if args.child:
        return child(args)
    import numpy as np

    from vocadapt import assets

    args.model = args.model or str(assets.smollm2())
    inp = prepare(Path(args.workdir), args.target_tokenizer)
    print("| method | side | seconds | peak RSS (MB) | rows compared | mean cosine | rows within 1e-4 |")
    print("|---|---|---|---|---|---|---|")
    for method in args.methods:
        ours_m, ours, computed = run("ours", method, args, inp, None)
        ref_m, ref, _ = run("ref", method, args, inp, args.reference_path)
        rows = np.flatnonzero(computed)  # agreement where our method computed a row, not its fallback
        a, b = ours[rows], ref[rows]
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
        close = (np.abs(a - b).max(1) <= 1e-4).mean()
        print(f"| {method} | ours | {ours_m['seconds']:.1f} | {ours_m['peak_rss_mb']:.0f} | {len(rows)} | {cos.mean():.4f} | {100 * close:.1f}% |")
        print(f"| {method} | reference | {ref_m['seconds']:.1f} | {ref_m['peak_rss_mb']:.0f} | | | |")
        print(f"| {method} | speed-up | {ref_m['seconds'] / max(ours_m['seconds'], 1e-9):.1f}x | | | median cos {np.median(cos):.4f} | |")


if __name__ == "__main__":
    main()
