"""Task data files: format, loading, validation, and the built-in Russian choice set.

See ``docs/tasks.md``. A data file is JSONL (one item per line) or YAML (a mapping with
``items:`` and optional ``prompt:``); its name says its kind: ``choice*.jsonl``,
``summary*.yaml``, ``copy*.jsonl``. Every error names the file and line (JSONL) or item (YAML).
"""

from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass, field
from pathlib import Path

from vocadapt.errors import VocadaptError

KINDS = ("choice", "summary", "copy")
_REQUIRED = {"choice": ("question", "options", "answer"), "summary": ("text", "summary"), "copy": ("text",)}


@dataclass
class Dataset:
    """A named list of validated items of one kind; ``prompt`` overrides the default template."""

    name: str
    kind: str
    items: list[dict]
    prompt: str | None = None
    source: str = ""
    extra: dict = field(default_factory=dict)


def _normalize_choice(item: dict, where: str) -> dict:
    opts = item["options"]
    if isinstance(opts, list):
        if not 2 <= len(opts) <= 26:
            raise VocadaptError(f"{where}: 'options' needs 2 to 26 entries, has {len(opts)}")
        opts = {string.ascii_uppercase[i]: o for i, o in enumerate(opts)}
    elif not isinstance(opts, dict) or len(opts) < 2:
        raise VocadaptError(f"{where}: 'options' must be a list or a label->text mapping with at least 2 entries")
    opts = {str(k): str(v) for k, v in opts.items()}
    answer = item["answer"]
    if isinstance(answer, int) and not isinstance(answer, bool):
        labels = list(opts)
        if not 0 <= answer < len(labels):
            raise VocadaptError(f"{where}: answer index {answer} is not among the {len(labels)} options")
        answer = labels[answer]
    answer = str(answer)
    if answer not in opts:
        raise VocadaptError(f"{where}: answer {answer!r} is not among the option labels {', '.join(opts)}")
    if any(not v.strip() for v in opts.values()):
        raise VocadaptError(f"{where}: an option is empty")
    return {"question": str(item["question"]), "options": opts, "answer": answer}


def validate_item(item, kind: str, where: str) -> dict:
    if not isinstance(item, dict):
        raise VocadaptError(f"{where}: expected an object with fields {', '.join(_REQUIRED[kind])}")
    missing = [f for f in _REQUIRED[kind] if f not in item or item[f] in (None, "")]
    if missing:
        raise VocadaptError(f"{where}: missing field{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    if kind == "choice":
        return _normalize_choice(item, where)
    return {k: str(item[k]) for k in _REQUIRED[kind]}


def kind_of(path: Path) -> str:
    for kind in KINDS:
        if path.name.startswith(kind):
            return kind
    raise VocadaptError(f"{path}: cannot tell the task kind; name the file choice*.jsonl, summary*.jsonl or copy*.jsonl")


def load_dataset(path: str | Path, kind: str | None = None) -> Dataset:
    path = Path(path)
    if not path.is_file():
        raise VocadaptError(f"task file not found: {path}")
    kind = kind or kind_of(path)
    prompt = None
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise VocadaptError(f"{path}: not valid YAML ({e})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
            raise VocadaptError(f"{path}: expected a mapping with an 'items:' list")
        prompt = doc.get("prompt")
        items = [validate_item(it, kind, f"{path}: item {i + 1}") for i, it in enumerate(doc["items"])]
    else:
        from vocadapt.corpus import iter_jsonl_records

        items = [validate_item(raw, kind, f"{path}:{lineno}") for lineno, raw in iter_jsonl_records(path)]
    if not items:
        raise VocadaptError(f"{path}: no items")
    return Dataset(name=path.stem, kind=kind, items=items, prompt=prompt, source=str(path))


def find_datasets(data_dir: str | Path | None, kind: str) -> list[Dataset]:
    """All ``kind*.jsonl|yaml|yml`` files in ``data_dir`` (sorted), loaded and validated."""
    if data_dir is None:
        return []
    d = Path(data_dir)
    if not d.is_dir():
        raise VocadaptError(f"task data directory not found: {d}")
    files = sorted(p for p in d.iterdir() if p.name.startswith(kind) and p.suffix in (".jsonl", ".yaml", ".yml"))
    return [load_dataset(p, kind) for p in files]


# --------------------------------------------------------------------------------------------
# Built-in: fortune completion (multiple choice from any running text)
# --------------------------------------------------------------------------------------------

COMPLETION_QUESTION = "Which ending continues this text?\n\n{beginning} …"


def build_completion_choice(texts: list[str], *, n: int = 40, n_options: int = 4, seed: int = 0,
                            min_chars: int = 60, max_chars: int = 300) -> list[dict]:
    """Multiple-choice items from running text: a document's beginning, its real ending and the
    endings of ``n_options - 1`` other documents, labels A.. shuffled with a seeded RNG.

    Documents are cut at the word boundary nearest their middle; the author line ("-- Name"
    in fortune files) is dropped first so the answer is not given away by a shared signature.
    """
    rng = random.Random(seed)
    halves = []
    for doc in texts:
        body = "\n".join(line for line in doc.strip().splitlines() if not line.strip().startswith("--"))
        body = " ".join(body.split())
        if not min_chars <= len(body) <= max_chars:
            continue
        mid = body.rfind(" ", 0, len(body) // 2 + 1)
        if mid <= 0:
            continue
        halves.append((body[:mid], body[mid + 1:]))
    if len(halves) < n_options:
        raise VocadaptError(f"need at least {n_options} documents of {min_chars}-{max_chars} characters "
                            f"to build a choice set, found {len(halves)}")
    rng.shuffle(halves)
    items = []
    for i, (beginning, ending) in enumerate(halves[:n]):
        others = [e for j, (_, e) in enumerate(halves) if j != i and e != ending]
        options = rng.sample(others, n_options - 1) + [ending]
        rng.shuffle(options)
        labels = string.ascii_uppercase[:n_options]
        items.append({"question": COMPLETION_QUESTION.format(beginning=beginning),
                      "options": dict(zip(labels, options)), "answer": labels[options.index(ending)]})
    return items


def write_jsonl(items: list[dict], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(it, ensure_ascii=False) + "\n" for it in items), encoding="utf-8")
    return path
