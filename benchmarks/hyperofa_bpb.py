"""Held-out bits per byte right after init (mean, hyperofa, ofa) and after N equal optimizer steps
(hyperofa + LM stage vs mean + embedding training), SmolLM2 -> 16k Russian BPE.

    vocadapt tokenizer train $(ru)/train.txt --out R/tok --kind bpe --vocab-size 16000 --like $(smollm2)
    vocadapt hypernet train $(smollm2) --vectors $(multilingual) --rank 100 --hidden 128 --max-words 32 --steps 300 --out R/hn
    python benchmarks/hyperofa_bpb.py N R        # results accumulate in R/results.json (re-runnable)
"""
import sys, time, json, logging
from pathlib import Path
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
from vocadapt import assets
from vocadapt.init import init_embeddings
from vocadapt.corpus import read_texts
from vocadapt.hypernet.lm import LmStageConfig, tune_hypernet
from vocadapt.train.lm import TrainConfig, train_embeddings
from vocadapt.evaluate.bpb import bits_per_byte, load_model
R = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("out/hyperofa-bench"); M = str(assets.smollm2())
V = str(assets.multilingual_vectors()); T = assets.russian_text()
HN = R / "hn"; N = int(sys.argv[1])
held = read_texts([T / "heldout.txt"])[:300]
out = json.loads((R / "results.json").read_text()) if (R / "results.json").exists() else {}
def note(k, v):
    out[k] = v; print("RESULT", k, v, flush=True)
    (R / "results.json").write_text(json.dumps(out, indent=1))
def init(name, method, opts):
    if not (R / f"init-{name}").exists():
        t = time.time(); r = init_embeddings(M, R / "tok", R / f"init-{name}", method, options=opts)
        note(f"init_seconds/{name}", round(time.time() - t, 1)); note(f"counts/{name}", r.counts["input"])
def bpb(name, d):
    if f"bpb/{name}" not in out:
        model, tok = load_model(d)
        t = time.time(); note(f"bpb/{name}", bits_per_byte(model, tok, held, max_length=256).bits_per_byte)
        note(f"eval_seconds/{name}", round(time.time() - t, 1))
init("mean", "mean", {}); bpb("mean", R / "init-mean")
while not (HN / "model" / "hypernet.json").exists():
    time.sleep(10)
init("hyperofa", "hyperofa", {"hypernet": [str(HN)]}); bpb("hyperofa", R / "init-hyperofa")
common = dict(steps=N, seq_len=128, batch_size=4, eval_every=0, lr=1e-3, warmup_steps=1, progress=False)
if not (R / "tune" / "model").exists():
    r = tune_hypernet(HN, R / "init-hyperofa", T / "train.txt", R / "tune", LmStageConfig(**common))
    note("tune_train_seconds", round(r.seconds, 1)); note("tune_tokens", r.tokens)
init(f"hyperofa-lm{N}", "hyperofa", {"hypernet": [str(R / "tune")]}); bpb(f"hyperofa+lm{N}", R / f"init-hyperofa-lm{N}")
if not (R / "train-mean" / "model").exists():
    r = train_embeddings(R / "init-mean", T / "train.txt", R / "train-mean", TrainConfig(trainable="embeddings+head", **common))
    note("meantrain_seconds", round(r.tokens / r.tokens_per_s, 1)); note("meantrain_tokens", r.tokens)
bpb(f"mean+train{N}", R / "train-mean" / "model")
init("ofa", "ofa", {"vectors": V, "rank": "100"}); bpb("ofa", R / "init-ofa")
