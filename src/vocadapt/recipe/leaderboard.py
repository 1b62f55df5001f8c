"""One comparison from a recipe run: the leaderboard, the per-text eval tables and the report.

A leaderboard row per init model (method and tokenizer): characters per token, bits per byte on
each held-out text right after init (step 0) and after each of the recipe's trainings, the init's wall time and peak
memory, and training throughput; the original model first, for reference. Instruct-side models
(the twin, each propagation, each calibration) get a second table. Written to
``OUT/leaderboard.{md,json}`` and into ``OUT/report.html`` with the loss curves.
"""

from __future__ import annotations

import json
from typing import Any

from vocadapt.recipe import schema as S
from vocadapt.recipe.plan import Plan


def _results(plan: Plan) -> dict[str, dict[str, Any]]:
    out = {}
    for s in plan.stages:
        m = s.done()
        if m and m.get("key") == s.key:
            out[s.id] = m.get("results", {})
    return out


def leaderboard_rows(plan: Plan) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(base-side rows, one per init method plus the original; instruct-side rows)."""
    res = _results(plan)
    texts = list(plan.recipe.heldout)
    first = texts[0]

    def bpb(label: str, text: str) -> float | None:
        return (res.get(f"eval:{text}:{label}", {}).get("metrics") or {}).get("bits_per_byte")

    def metric(label: str, key: str) -> Any:
        return (res.get(f"eval:{first}:{label}", {}).get("metrics") or {}).get(key)

    base, instruct = [], []
    row: dict[str, Any] = {"model": "original", "chars_per_token": metric("original", "chars_per_token")}
    row.update({f"bpb {t}": bpb("original", t) for t in texts})
    base.append(row)
    got = S.train_configs(plan.recipe)
    suffixes = list(got[1]) if got else []
    train_ids = {s.payload.get("label"): s.id for s in plan.stages if s.kind == "train"}
    for name, _, _ in plan.recipe.init_models():
        init = res.get(f"init:{name}", {})
        row = {"model": name, "chars_per_token": metric(name, "chars_per_token")}
        for t in texts:
            row[f"bpb {t}"] = bpb(name, t)
            for sfx in suffixes:
                row[f"bpb {t} {sfx}"] = bpb(f"{name}{sfx}", t)
        row["init_s"] = init.get("wall_seconds")
        rss = init.get("peak_rss_bytes")
        row["init_peak_gib"] = round(rss / 2**30, 2) if rss else None
        for sfx in suffixes:
            key = "train_tokens_per_s" if sfx == "+train" else f"tokens/s {sfx}"
            row[key] = res.get(train_ids.get(f"{name}{sfx}", ""), {}).get("tokens_per_s")
        # every training of one init model sees the same batches: one share of new rows shown
        seen = next((v for sfx in suffixes
                     if (v := res.get(train_ids.get(f"{name}{sfx}", ""), {}).get("new_rows_seen")) is not None), None)
        if seen is not None:
            row["new rows trained"] = seen
        base.append(row)
    for m in plan.models:
        if m.side != "instruct":
            continue
        row = {"model": m.label}
        picked = res.get(f"propagate:{m.label.removesuffix('+calibrate')}", {}).get("picked")
        if picked:
            row["model"] = f"{m.label} ({picked})"
        for t in texts:
            row[f"bpb {t}"] = bpb(m.label, t)
        metrics = res.get(f"eval:{first}:{m.label}", {}).get("metrics") or {}
        for k in ("chars_per_token", "copy_sentence", "copy_sentence_match", "copy_paragraph", "score"):
            if k in metrics:
                row[k] = metrics[k]
        instruct.append(row)
    return base, instruct


def markdown_table(rows: list[dict[str, Any]]) -> str:
    from vocadapt.evaluate.runner import fmt

    if not rows:
        return ""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def summary(plan: Plan) -> dict[str, Any]:
    """Eval rows of the first held-out text (the shape ``vocadapt eval`` returns) plus the leaderboard."""
    res = _results(plan)
    first = next(iter(plan.recipe.heldout))
    rows = []
    for m in plan.models:
        r = res.get(f"eval:{first}:{m.label}")
        if r:
            rows.append({"model": m.label, "path": str(m.path), "metrics": r.get("metrics", {}), "seconds": r.get("seconds")})
    base, instruct = leaderboard_rows(plan)
    return {"models": rows, "leaderboard": base, "instruct": instruct, "text": first}


def write_outputs(plan: Plan) -> dict[str, Any]:
    """leaderboard.md/json, a summary.json per held-out text, and report.html."""
    from vocadapt.evaluate.report import build_report
    from vocadapt.evaluate.runner import summary_markdown

    r = plan.recipe
    res = _results(plan)
    eval_dirs = []
    for text in r.heldout:
        rows = []
        for m in plan.models:
            e = res.get(f"eval:{text}:{m.label}")
            if e:
                rows.append({"model": m.label, "path": str(m.path), "metrics": e.get("metrics", {}), "seconds": e.get("seconds")})
        d = r.out / "eval" / text
        d.mkdir(parents=True, exist_ok=True)
        (d / "summary.json").write_text(json.dumps({"models": rows, "text": text}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (d / "summary.md").write_text(summary_markdown(rows), encoding="utf-8")
        eval_dirs.append(d)
    base, instruct = leaderboard_rows(plan)
    (r.out / "leaderboard.json").write_text(json.dumps({"base": base, "instruct": instruct}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md = f"# {r.name}\n\n" + markdown_table(base) + ("\n## Instruct model\n\n" + markdown_table(instruct) if instruct else "")
    (r.out / "leaderboard.md").write_text(md, encoding="utf-8")
    run_dirs = [s.dest for s in plan.stages if s.kind == "train" and (s.dest / "train_log.jsonl").exists()]
    page = build_report([*eval_dirs, *run_dirs], r.out / "report.html", title=f"vocadapt: {r.name}",
                        leaderboard={"base": base, "instruct": instruct})
    return {"report": str(page.path), "leaderboard": str(r.out / "leaderboard.md")}
