"""Joint (2k output) vs separate hypernetworks for an untied head, on a synthetic untied model
whose rows are known functions of the tokens' word sets (so there is something to learn)."""
import sys, json, shutil, logging
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from pathlib import Path
import numpy as np, torch
import factories as fx, method_options as mo
from vocadapt.hypernet.train import HypernetConfig, train_hypernet
from vocadapt.init.ofa import word_sets
from vocadapt.init._similarity import token_vectors_from_words
from vocadapt.vectors.io import load_vectors
w = Path(sys.argv[1] if len(sys.argv) > 1 else "out/hyperofa-head"); shutil.rmtree(w, ignore_errors=True); w.mkdir(parents=True)
texts = fx.corpus("en", 300) + fx.corpus("mixed", 100, seed=1)
tok = fx.TOKENIZERS["sentencepiece"](texts, vocab_size=800)
model = fx.tiny_model("llama", len(tok), False)
vec = mo._ofa(w / "vec")["vectors"]
words, mat, inc = word_sets(tok, load_vectors(vec), None, "source")
tv, has = token_vectors_from_words(tok, words, mat, incidence=inc)
g = torch.Generator().manual_seed(0)
E = model.get_input_embeddings().weight.data; O = model.get_output_embeddings().weight.data
d = E.shape[1]
A, B = torch.randn(tv.shape[1], d, generator=g), torch.randn(tv.shape[1], d, generator=g)
n = tv.shape[0]
E[:n][has] = torch.tanh(tv[has] @ A) * 0.05 + 0.005 * torch.randn(int(has.sum()), d, generator=g)
O[:n][has] = (tv[has] @ B) * 0.02 + 0.005 * torch.randn(int(has.sum()), d, generator=g)
src = fx.save_model(model, tok, w / "src")
res = {}
common = dict(vectors=vec, rank="16", hidden=64, steps=200, eval_every=50, patience=0, max_words=32, batch_size=64, progress=False, dropout=0.1)
for name, m in (("joint", "auto"), ("input-only", "input"), ("output-only", "output")):
    r = train_hypernet(src, w / name, HypernetConfig(matrix=m, **common))
    res[name] = {k: r.quality[k]["hyperofa"] for k in ("input", "output") if k in r.quality}
    res[name + "/ofa"] = {k: r.quality[k]["ofa"] for k in ("input", "output") if k in r.quality}
    res[name + "/seconds"] = r.seconds
print(json.dumps(res, indent=1))
