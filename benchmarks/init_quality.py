"""Init quality: every init method x held-out bits per byte at step 0 and after training.

Runs a recipe (default: the demo, SmolLM2-135M-Instruct -> a 16k Russian BPE, every init
method, a short embedding-only training run per method, two held-out texts) and prints its
leaderboard as Markdown: characters per token, bits per byte on each held-out text right after
init and after training, init wall time and peak RSS (each init in its own process), training
tokens/s. Stages already done in ``--out`` are reused, so a rerun only prints.

    python benchmarks/init_quality.py                      # the full demo recipe
    python benchmarks/init_quality.py --quick              # the quick demo
    python benchmarks/init_quality.py --recipe my.yaml --out out/bench
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
from pathlib import Path


def main() -> None:
    from vocadapt.recipe import demo_recipe_path, load_recipe, run_recipe
    from vocadapt.recipe.leaderboard import markdown_table

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", type=Path, default=None, help="recipe file (default: the packaged demo)")
    ap.add_argument("--quick", action="store_true", help="the quick demo recipe")
    ap.add_argument("--out", type=Path, default=None, help="run folder (default: the recipe's)")
    args = ap.parse_args()
    r = load_recipe(args.recipe or demo_recipe_path(args.quick), args.out)
    summary = run_recipe(r)
    print(f"\n## {r.name} — {dt.date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores\n")
    texts = ", ".join(f"{k}: {', '.join(v)}" for k, v in r.heldout.items())
    print(f"held-out texts: {texts}\n")
    print(markdown_table(summary["leaderboard"]))
    if summary.get("instruct"):
        print("\ninstruct side:\n")
        print(markdown_table(summary["instruct"]))
    print(f"\nreport: {r.out / 'report.html'}")


if __name__ == "__main__":
    main()
