"""Build the closing-note tokenizers on the embedded assets and print their stats.

    PYTHONPATH=src python benchmarks/tokenizer_stats.py [--out DIR] [--quick]

Source: SmolLM2-135M-Instruct. Target training text: Russian fortunes (train split); measured
on the Russian held-out split and, for the length change of text the source handled well, the
English held-out split. Prints one table per language plus the English length change.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from rich.console import Console

from vocadapt import assets
from vocadapt.tokenizer import (
    ExtendConfig,
    OptimizeConfig,
    TrainConfig,
    extend_tokenizer,
    optimize_tokenizer,
    tokenizer_stats,
    train_tokenizer,
)
from vocadapt.tokenizer.stats import stats_table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=None, help="keep the tokenizers here (default: a temp dir)")
    ap.add_argument("--quick", action="store_true", help="16k variants only")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="vocadapt-tok-"))
    ru, en, model = assets.russian_text(), assets.english_text(), assets.smollm2()
    train_txt, ru_held, en_held = ru / "train.txt", ru / "heldout.txt", en / "heldout.txt"
    sizes = [16000] if args.quick else [16000, 32000]
    built: dict[str, Path] = {"smollm2 (original)": model}
    timings: dict[str, float] = {}

    def run(name: str, fn) -> None:
        t = time.time()
        r = fn(out / name.replace(" ", "_"))
        timings[name] = time.time() - t
        built[name] = Path(r["out"])
        if r.get("warning"):
            print(f"{name}: {r['warning']}")

    for kind in ("bpe", "unigram"):
        for n in sizes:
            cfg = TrainConfig(kind=kind, vocab_size=n, like=str(model), show_progress=False)
            run(f"train {kind} {n // 1000}k", lambda o, cfg=cfg: train_tokenizer(train_txt, out=o, config=cfg, overwrite=True))
    for n in (8000, 16000):
        cfg = ExtendConfig(add=n, show_progress=False)
        run(f"extend +{n // 1000}k", lambda o, cfg=cfg: extend_tokenizer(model, train_txt, out=o, config=cfg, overwrite=True))
    cfg = OptimizeConfig(keep=16000, add=16000, show_progress=False)
    run("optimize 16k+16k", lambda o: optimize_tokenizer(model, train_txt, out=o, config=cfg, overwrite=True))

    names, paths = list(built), list(built.values())
    console = Console(width=160)
    results = {}
    for lang, held in (("Russian", ru_held), ("English", en_held)):
        rows = tokenizer_stats(paths, [held], reference=model)
        for name, row in zip(names, rows):
            row["tokenizer"] = name
        console.print(f"\n[bold]{lang} held-out ({held})[/bold]")
        console.print(stats_table(rows))
        results[lang] = rows
    base_ru = results["Russian"][0]["chars_per_token"]
    base_en = results["English"][0]["tokens"]
    print("\nname | ru chars/token | x original | en tokens change | build s")
    for i, name in enumerate(names):
        ru_cpt = results["Russian"][i]["chars_per_token"]
        en_change = 100.0 * (results["English"][i]["tokens"] - base_en) / base_en
        print(f"{name} | {ru_cpt:.3f} | {ru_cpt / base_ru:.2f}x | {en_change:+.1f}% | {timings.get(name, 0):.0f}")
    (out / "stats.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"\ntokenizers and stats.json in {out}")


if __name__ == "__main__":
    main()
