"""Bits per byte on held-out Russian text right after init, per method, on the embedded assets.

SmolLM2-135M-Instruct gets a Russian tokenizer (default /tmp/ru_tok, an 8k byte-level BPE)
and each init method; the model is then scored, untrained, on the first N held-out documents
of the Russian asset text. bits per byte = total NLL in bits / UTF-8 bytes of the text; each
document is encoded on its own with BOS prepended, in windows of at most 512 tokens (a minimal
private computation until ``vocadapt.evaluate.bpb`` lands on main).

    PYTHONPATH=src python benchmarks/init_quality.py --target-tokenizer /tmp/ru_tok --workdir /tmp/sim/quality
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch


def bits_per_byte(model_dir: Path, docs: list[str], window: int = 512) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    nll, n_bytes = 0.0, 0
    encs = tok.backend_tokenizer.encode_batch(docs, add_special_tokens=False)
    with torch.no_grad():
        for doc, enc in zip(docs, encs):
            ids = enc.ids
            n_bytes += len(doc.encode("utf-8"))
            for s in range(0, len(ids), window - 1):
                chunk = torch.tensor([[bos] + ids[s : s + window - 1]])
                logits = model(chunk).logits[0, :-1].float()
                nll += torch.nn.functional.cross_entropy(logits, chunk[0, 1:], reduction="sum").item()
    return nll / math.log(2) / n_bytes


def main() -> None:
    from vocadapt import assets
    from vocadapt.corpus import iter_texts
    from vocadapt.init import init_embeddings
    from vocadapt.vectors.align import read_dictionary
    from vocadapt.vectors.io import WordVectors, load_vectors, save_vectors
    from vocadapt.vectors.align import align_vectors

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target-tokenizer", default="/tmp/ru_tok")
    ap.add_argument("--workdir", default="/tmp/vocadapt-quality")
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--methods", nargs="+", default=["random", "mean", "focus", "wechsel", "ofa"])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    model = assets.smollm2()
    ru = assets.russian_text()
    docs = list(iter_texts([ru / "heldout.txt"]))[: args.docs]
    en_vec, ru_vec, dic = assets.english_vectors(), assets.russian_vectors(), assets.en_ru_dictionary()
    multi = work / "en_ru_multilingual.bin"
    if "ofa" in args.methods and not multi.exists():
        en, rus = load_vectors(en_vec), load_vectors(ru_vec)
        mapped, _ = align_vectors(en, rus, read_dictionary(dic))
        import numpy as np

        both = WordVectors([f"eng:{w}" for w in mapped.words] + [f"rus:{w}" for w in rus.words], np.concatenate([mapped.matrix, rus.matrix]))
        save_vectors(both, multi)
    options = {
        "focus": {"aux_corpus": [str(ru / "train.txt")]},
        "wechsel": {"source_vectors": str(en_vec), "target_vectors": str(ru_vec), "dictionary": str(dic)},
        "ofa": {"vectors": str(multi), "rank": "100"},
    }
    print(f"source model, own tokenizer: {bits_per_byte(model, docs):.4f} bits/byte on {len(docs)} held-out documents")
    print("| method | bits/byte | computed | fallback | init seconds |")
    print("|---|---|---|---|---|")
    for method in args.methods:
        out = work / method
        t0 = time.perf_counter()
        rep = init_embeddings(model, args.target_tokenizer, out, method, overwrite=True, options=options.get(method))
        secs = time.perf_counter() - t0
        c = rep.counts["input"]
        print(f"| {method} | {bits_per_byte(out, docs):.4f} | {c['computed']} | {c['fallback']} | {secs:.1f} |", flush=True)


if __name__ == "__main__":
    main()
