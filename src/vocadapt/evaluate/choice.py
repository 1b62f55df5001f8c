"""Multiple choice, scored two ways (both use only ``lm.loglikelihood``).

* ``label`` (Darumeru): the question and lettered options form the prompt; the prediction is
  the label (A, B, ...) whose log-probability right after the prompt is highest.
* ``option`` (lm-eval ``acc_norm``): the prediction is the option whose text has the highest
  log-likelihood after the question, divided by its length in UTF-8 bytes, so long options are
  not penalized and the normalization does not depend on the tokenizer.

Metrics per mode: accuracy and macro-F1 over the gold labels.
"""

from __future__ import annotations

LABEL_PROMPT = "{question}\n\n{options}\n\nAnswer with the letter of the correct option."
OPTION_PROMPT = "{question}"


def macro_f1(gold: list[str], pred: list[str]) -> float:
    """Mean over gold classes of the per-class F1 (classes never gold but predicted only lower
    precision of others, as in scikit-learn with ``labels=sorted(set(gold))``)."""
    classes = sorted(set(gold))
    f1s = []
    for c in classes:
        tp = sum(g == c and p == c for g, p in zip(gold, pred))
        fp = sum(g != c and p == c for g, p in zip(gold, pred))
        fn = sum(g == c and p != c for g, p in zip(gold, pred))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(f1s) / len(f1s) if f1s else 0.0


def label_prompt(item: dict, template: str = LABEL_PROMPT) -> str:
    opts = "\n".join(f"{k}. {v}" for k, v in item["options"].items())
    return template.format(question=item["question"], options=opts)


def run_choice(lm, items: list[dict], *, modes: tuple[str, ...] = ("label", "option"),
               label_template: str = LABEL_PROMPT, option_template: str = OPTION_PROMPT) -> dict:
    """items: validated [{"question", "options": {label: text}, "answer": label}]."""
    preds: dict[str, list[str]] = {}
    if "label" in modes:
        # Without a chat template the answer follows "Answer:" after a space, as in few-shot text.
        sep = "" if lm.has_chat_template else "\nAnswer:"
        reqs, owners = [], []
        for i, it in enumerate(items):
            ctx = lm.chat(label_prompt(it, label_template)) + sep
            for label in it["options"]:
                reqs.append((ctx, label if lm.has_chat_template else " " + label))
                owners.append((i, label))
        preds["label"] = _argmax(items, reqs, owners, lm.loglikelihood(reqs), normalize=False)
    if "option" in modes:
        reqs, owners = [], []
        for i, it in enumerate(items):
            ctx = lm.chat(option_template.format(question=it["question"]))
            for label, text in it["options"].items():
                reqs.append((ctx, text if lm.has_chat_template else " " + text))
                owners.append((i, label))
        preds["option"] = _argmax(items, reqs, owners, lm.loglikelihood(reqs), normalize=True)
    gold = [it["answer"] for it in items]
    metrics = {"n": len(items)}
    for mode, p in preds.items():
        metrics[f"acc_{mode}"] = sum(a == b for a, b in zip(gold, p)) / len(items)
        metrics[f"f1_{mode}"] = macro_f1(gold, p)
    samples = [{"question": it["question"], "answer": it["answer"], **{f"pred_{m}": p[i] for m, p in preds.items()}}
               for i, it in enumerate(items)]
    return {"metrics": metrics, "samples": samples}


def _argmax(items, reqs, owners, results, *, normalize: bool) -> list[str]:
    best: list[tuple[float, str]] = [(-float("inf"), "")] * len(items)
    for (ctx, cont), (i, label), (lp, _) in zip(reqs, owners, results):
        score = lp / max(len(cont.encode("utf-8")), 1) if normalize else lp
        if score > best[i][0]:
            best[i] = (score, label)
    return [label for _, label in best]
