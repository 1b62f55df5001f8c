"""Write the Russian fortune-completion multiple-choice set (labels A-D) as JSONL.

    python benchmarks/make_choice_ru.py out/choice-fortunes-ru.jsonl [--n 100] [--seed 0]

Built from the held-out split of the offline Russian asset (fortunes-ru), so it never overlaps
the text a tokenizer or embeddings were trained on.
"""

from __future__ import annotations

import argparse

from vocadapt.assets import russian_text
from vocadapt.corpus import read_texts
from vocadapt.evaluate.tasks import build_completion_choice, write_jsonl

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    items = build_completion_choice(read_texts([russian_text() / "heldout.txt"]), n=args.n, seed=args.seed)
    print(f"wrote {len(items)} items to {write_jsonl(items, args.out)}")
