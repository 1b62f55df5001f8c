"""``vocadapt report``: one page that puts runs side by side.

Reads, from each directory given:

* an eval directory (``summary.json``): one table row per evaluated model;
* an init / train directory (``vocadapt.json``; ``train_log.jsonl`` rows
  ``{"step", "loss", "bpb"?, "tokens"?}``): its method, init counts and training curves.

Writes the page (``.html``, or ``.md`` for Markdown) and PNG plots next to it, in a folder
``<page-stem>_files/``, referenced by relative paths: loss and bits-per-byte curves, and
characters-per-token bars. Matplotlib runs on the Agg backend (no display needed).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

from vocadapt.evaluate.runner import fmt
from vocadapt.errors import VocadaptError

# Columns shown first, with their direction; everything else follows in order of appearance.
_KNOWN = {
    "bits_per_byte": "↓", "chars_per_token": "↑", "score": "↑", "tokens_per_s": "↑", "chars_per_s": "↑",
    "read_chars_per_s": "↑",
}


@dataclass
class Page:
    path: Path
    rows: list[dict] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)


def _read_jsonl(path: Path) -> list[dict]:
    from vocadapt.corpus import iter_jsonl_records

    return [row for _, row in iter_jsonl_records(path)]


def collect(dirs: list[str | Path]) -> tuple[list[dict], dict[str, list[dict]]]:
    """(table rows, training logs by run name). A row: {"run", "kind", "method", "metrics"}."""
    from vocadapt.provenance import read_provenance

    rows, logs = [], {}
    for d in map(Path, dirs):
        if not d.is_dir():
            raise VocadaptError(f"not a directory: {d}")
        prov = read_provenance(d) or {}
        found = False
        if (d / "summary.json").exists():
            summary = json.loads((d / "summary.json").read_text(encoding="utf-8"))
            for m in summary.get("models", []):
                rows.append({"run": f"{d.name}/{m['model']}", "kind": "eval", "method": _method_of(m.get("path")),
                             "metrics": m.get("metrics", {})})
            found = True
        if (d / "train_log.jsonl").exists():
            from vocadapt.train.plot import run_label

            logs[run_label(d)] = _read_jsonl(d / "train_log.jsonl")
            found = True
            # A run directory's provenance is its final model's.
            prov = prov or read_provenance(d / "model") or {}
        if prov and prov.get("step") != "eval":
            res = prov.get("results", {})
            metrics = {k: v for k, v in res.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            for k, v in (res.get("counts") or {}).items():
                # counts are flat ({copied, computed, fallback}) or per matrix ({input: {...}}).
                for k2, v2 in (v.items() if isinstance(v, dict) else [(None, v)]):
                    metrics[f"init.{k}" + (f".{k2}" if k2 else "")] = v2
            rows.append({"run": d.name, "kind": prov.get("step", "?"),
                         "method": (prov.get("config") or {}).get("method") or res.get("init_method") or "",
                         "metrics": metrics})
            found = True
        if not found:
            raise VocadaptError(f"{d}: no summary.json, vocadapt.json or train_log.jsonl: nothing to report")
    return rows, logs


def _method_of(model_path: str | None) -> str:
    """The init method recorded in an evaluated model's own provenance, if any."""
    if not model_path:
        return ""
    from vocadapt.provenance import read_provenance

    prov = read_provenance(model_path) or {}
    return str((prov.get("config") or {}).get("method", "")) if prov else "original"


def _columns(rows: list[dict]) -> list[str]:
    from vocadapt.evaluate.runner import columns

    seen = columns(rows)
    return [k for k in _KNOWN if k in seen] + [k for k in seen if k not in _KNOWN]


def _plots(rows: list[dict], logs: dict[str, list[dict]], folder: Path) -> list[tuple[str, Path]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for key, label, x in (("loss", "training loss (nats/token)", "step"), ("bpb", "held-out bits per byte", "step"),
                          ("bpb", "held-out bits per byte", "tokens")):
        series = {name: [(r[x], r[key]) for r in log if r.get(key) is not None and x in r]
                  for name, log in logs.items()}
        series = {k: v for k, v in series.items() if v}
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
        for name, pts in series.items():
            ax.plot(*zip(*pts), label=name, marker="o" if len(pts) < 20 else None, markersize=3)
        ax.set_xlabel("tokens seen" if x == "tokens" else "step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = folder / (f"{key}.png" if x == "step" else f"{key}_by_{x}.png")
        fig.savefig(path)
        plt.close(fig)
        out.append((label if x == "step" else f"{label} by tokens seen", path))
    for key, label, better in (("chars_per_token", "characters per token", "higher = more text per token"),
                               ("bits_per_byte", "bits per byte", "lower is better"),
                               ("chars_per_s", "generated characters per second", "higher is better"),
                               ("read_chars_per_s", "characters read per second (scoring)", "higher is better")):
        bars = [(r["run"], r["metrics"][key]) for r in rows if isinstance(r["metrics"].get(key), (int, float))]
        if not bars:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 0.5 + 0.45 * len(bars)), dpi=110)
        names, vals = zip(*bars)
        ax.barh(range(len(vals)), vals, color="#4c72b0")
        ax.set_yticks(range(len(vals)), names, fontsize=8)
        ax.invert_yaxis()
        for i, v in enumerate(vals):
            ax.text(v, i, f" {v:.2f}", va="center", fontsize=8)
        ax.set_xlabel(f"{label} ({better})")
        ax.set_xlim(0, max(vals) * 1.18)
        fig.tight_layout()
        path = folder / f"{key}.png"
        fig.savefig(path)
        plt.close(fig)
        out.append((label, path))
    return out


_CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1150px}
table{border-collapse:collapse;font-size:13px;margin:8px 0 20px}th,td{border:1px solid #ccc;padding:4px 8px}
th{background:#f1f3f6;text-align:left;max-width:110px}.wide{overflow-x:auto}td.n{text-align:right;font-variant-numeric:tabular-nums}
td.best{font-weight:bold;background:#e8f4ea}figure{display:inline-block;margin:8px}figcaption{font-size:12px;color:#555}
.note{font-size:12px;color:#555}"""


def build_report(dirs: list[str | Path], out: str | Path, *, title: str = "vocadapt report") -> Page:
    """Write the page and its plots; returns what was written."""
    out = Path(out)
    if out.suffix not in (".html", ".htm", ".md"):
        raise VocadaptError(f"report must end in .html or .md, not {out.name}")
    rows, logs = collect(dirs)
    out.parent.mkdir(parents=True, exist_ok=True)
    images = _plots(rows, logs, out.parent / f"{out.stem}_files")
    cols = _columns(rows)
    best = {}
    for c in cols:
        vals = [r["metrics"][c] for r in rows if isinstance(r["metrics"].get(c), (int, float))]
        if len(vals) > 1 and c in _KNOWN:
            best[c] = min(vals) if _KNOWN[c] == "↓" else max(vals)
        elif len(vals) > 1 and any(s in c for s in ("acc_", "f1_", "copy_", "rouge")):
            best[c] = max(vals)
    rel = [(label, p.relative_to(out.parent).as_posix()) for label, p in images]
    if out.suffix == ".md":
        text = _markdown(title, rows, cols, rel)
    else:
        text = _html(title, rows, cols, best, rel)
    out.write_text(text, encoding="utf-8")
    return Page(path=out, rows=rows, images=[p for _, p in images])


def _header(c: str) -> str:
    return f"{c} {_KNOWN[c]}" if c in _KNOWN else c


def _html(title, rows, cols, best, images) -> str:
    e = html.escape
    # Break long metric names only after '.' and '_', so headers wrap at word-like points.
    head = "".join(f"<th>{e(_header(c)).replace('.', '.<wbr>').replace('_', '_<wbr>')}</th>" for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = r["metrics"].get(c)
            cls = "n best" if c in best and v == best[c] else "n"
            cells.append(f'<td class="{cls}">{e(fmt(v))}</td>')
        body.append(f"<tr><td>{e(r['run'])}</td><td>{e(r['kind'])}</td><td>{e(str(r['method']))}</td>{''.join(cells)}</tr>")
    figs = "".join(f'<figure><img src="{e(p)}" alt="{e(l)}"><figcaption>{e(l)}</figcaption></figure>' for l, p in images)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{e(title)}</title><style>{_CSS}</style></head>
<body><h1>{e(title)}</h1>
<h2>Runs × metrics</h2>
<div class="wide"><table><tr><th>run</th><th>step</th><th>method</th>{head}</tr>
{''.join(body)}</table></div>
<p class="note">↓ lower is better, ↑ higher is better; best value per column in bold. bits_per_byte is the
held-out negative log-likelihood in bits per UTF-8 byte (comparable across tokenizers); score is the plain
mean over task datasets (copy, choice, summary), as in Darumeru.</p>
<h2>Plots</h2>{figs or '<p class="note">no curves or bars to draw</p>'}
</body></html>
"""


def _markdown(title, rows, cols, images) -> str:
    lines = [f"# {title}", "", "| run | step | method | " + " | ".join(_header(c) for c in cols) + " |",
             "|---|---|---|" + "---|" * len(cols)]
    for r in rows:
        lines.append(f"| {r['run']} | {r['kind']} | {r['method']} | "
                     + " | ".join(fmt(r["metrics"].get(c)) for c in cols) + " |")
    lines.append("")
    lines += [f"![{label}]({p})" for label, p in images]
    return "\n".join(lines) + "\n"
