"""Where an adapted model's copy fails: old tokens or new ones, reading or writing.

For each model directory, on copy prompts built from held-out text (the demo's prompt, chat
template, greedy decoding):

* ``copy``: characters matched (``evaluate.copy_task.char_match``), the prompt as the model's
  tokenizer encodes it, output free (what ``vocadapt eval --tasks copy`` measures);
* ``new out``: the share of new tokens (ids past the original tokenizer's) among the generated ones, against
  their share in the references' own encoding;
* ``copy, old ids``: the prompt encoded by ``--original`` (old ids only) and the output kept to
  old ids: the model as if its tokenizer had not been extended (meaningful for ``extend``
  vocabularies, whose old ids are the original's);
* ``forced old`` / ``forced new``: teacher-forced accuracy on the reference answer, split by
  whether the reference token is old or new: does greedy decoding pick the right next token when
  the answer so far is right?

    PYTHONPATH=src python benchmarks/copy_diagnosis.py --original ORIGINAL_MODEL MODEL_DIR...

``--text`` defaults to the held-out Russian fortunes asset (first ``--max-chars`` characters);
prints one table row per model.
"""

from __future__ import annotations

import argparse
import time

import torch


class _OldIdsOnly:
    """Logits processor: only ids below ``n`` may be generated."""

    def __init__(self, n: int):
        self.n = n

    def __call__(self, input_ids, scores):  # noqa: ARG002
        scores[:, self.n:] = -float("inf")
        return scores


def _generate(lm, ids: list[int], max_new: int, old_only: int | None) -> list[int]:
    from transformers import LogitsProcessorList

    kw = {"logits_processor": LogitsProcessorList([_OldIdsOnly(old_only)])} if old_only else {}
    x = torch.tensor([ids])
    out = lm.model.generate(input_ids=x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=max_new,
                            pad_token_id=lm.tokenizer.eos_token_id, eos_token_id=lm.tokenizer.eos_token_id, **kw)
    new = out[0, x.shape[1]:].tolist()
    eos = lm.tokenizer.eos_token_id
    return new[: new.index(eos)] if eos in new else new


def diagnose(model_dir: str, original_tok, refs: list[str], n_old: int) -> dict:
    from vocadapt.evaluate.copy_task import DEFAULT_PROMPT, char_match
    from vocadapt.evaluate.lm import HFLM

    lm = HFLM.from_dir(model_dir)
    tok = lm.tokenizer
    as_old = HFLM(lm.model, original_tok)  # the same model reading the original tokenizer's ids
    free, old, n_gen, n_gen_new, n_ref, n_ref_new = [], [], 0, 0, 0, 0
    forced = {"old": [0, 0], "new": [0, 0]}
    t0 = time.perf_counter()
    for ref in refs:
        chat = lm.chat(DEFAULT_PROMPT.format(text=ref))
        prompt, answer = lm._encode_context(chat), lm.encode(ref)  # as `vocadapt eval --tasks copy` encodes them
        n_ref += len(answer)
        n_ref_new += sum(i >= n_old for i in answer)
        out = _generate(lm, prompt, int(len(answer) * 1.3) + 8, None)
        n_gen += len(out)
        n_gen_new += sum(i >= n_old for i in out)
        free.append(char_match(tok.decode(out, skip_special_tokens=True).strip(), ref))
        out = _generate(lm, as_old._encode_context(chat), int(as_old.count_tokens(ref) * 1.3) + 8, n_old)
        old.append(char_match(tok.decode(out, skip_special_tokens=True).strip(), ref))
        with torch.no_grad():
            logits = lm.model(input_ids=torch.tensor([prompt + answer])).logits[0, len(prompt) - 1:-1]
        for gold, pred in zip(answer, logits.argmax(-1).tolist()):
            k = "new" if gold >= n_old else "old"
            forced[k][0] += int(gold == pred)
            forced[k][1] += 1
    acc = {k: (c / n if n else float("nan"), n) for k, (c, n) in forced.items()}
    return {"model": model_dir, "copy": sum(free) / len(free), "new_out": n_gen_new / max(n_gen, 1),
            "new_ref": n_ref_new / max(n_ref, 1), "copy_old_ids": sum(old) / len(old),
            "forced_old": acc["old"], "forced_new": acc["new"], "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="model directories (the original too, for its row)")
    ap.add_argument("--original", required=True, help="the original model (its tokenizer defines the old ids)")
    ap.add_argument("--text", nargs="*", help="held-out text files (default: the Russian fortunes asset's held-out split)")
    ap.add_argument("--max-chars", type=int, default=8000)
    ap.add_argument("--sentences", type=int, default=12)
    ap.add_argument("--paragraphs", type=int, default=2)
    args = ap.parse_args()

    from vocadapt.corpus import read_texts, take_chars
    from vocadapt.evaluate.copy_task import build_copy_items
    from vocadapt.tokenizer.load import load_tokenizer

    if args.text:
        paths = args.text
    else:
        from vocadapt import assets

        paths = [assets.russian_text() / "heldout.txt"]
    texts = take_chars(read_texts(paths), args.max_chars)
    sentences, paragraphs = build_copy_items(texts, n_sentences=args.sentences, n_paragraphs=args.paragraphs, seed=0)
    original = load_tokenizer(args.original, "the original model's tokenizer")
    n_old = len(original)
    print(f"{len(sentences)} sentences, {len(paragraphs)} paragraphs; old ids: < {n_old}", flush=True)
    print("| model | copy | new tokens out (in the references) | copy, old ids only | forced old | forced new | s |")
    print("|---|---|---|---|---|---|---|")
    for m in args.models:
        r = diagnose(m, original, sentences + paragraphs, n_old)
        print(f"| {m} | {r['copy']:.3f} | {r['new_out']:.3f} ({r['new_ref']:.3f}) | {r['copy_old_ids']:.3f} | "
              f"{r['forced_old'][0]:.3f} of {r['forced_old'][1]} | {r['forced_new'][0]:.3f} of {r['forced_new'][1]} | "
              f"{r['seconds']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
