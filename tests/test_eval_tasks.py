"""Scoring formulas, task-file validation and the model interface on a tiny random model."""

from __future__ import annotations

import json
import math

import pytest

from vocadapt.errors import VocadaptError
from vocadapt.evaluate import choice as choice_mod
from vocadapt.evaluate.copy_task import build_copy_items, char_match, paragraph_score, sentence_score
from vocadapt.evaluate.lm import HFLM, GenArgs
from vocadapt.evaluate.summary import lcs_length, rouge, rouge_l, rouge_n, tokenize
from vocadapt.evaluate.tasks import build_completion_choice, load_dataset

FORTUNES = [
    "Умный в гору не пойдёт, умный гору обойдёт, а глупый так и будет стоять у подножия.\n\t\t-- Автор",
    "Ничто так не старит, как третья фотография в паспорте, особенно если она сделана утром.",
    "Обещанного три года ждут, а потом ещё немного, и ещё чуть-чуть, и забывают совсем.",
    "Кто рано встаёт, тому бог подаёт, а кто поздно встаёт, тот высыпается как следует.",
    "Тише едешь — дальше будешь от того места, куда едешь, но зато без штрафов и аварий.",
]


# -- copy ------------------------------------------------------------------------------------
def test_sentence_copy_score():
    assert sentence_score(10, 10) == 1.0
    assert sentence_score(5, 10) == 0.5
    assert sentence_score(20, 10) == 0.5
    assert sentence_score(0, 10) == 0.0


def test_paragraph_copy_threshold():
    ref = "а" * 200
    assert paragraph_score(ref, ref) == 1.0
    assert paragraph_score(ref[:-2], ref) == 1.0  # 198/200 = 0.99
    assert paragraph_score(ref[:-3], ref) == 0.0  # 197/200 < 0.99
    assert paragraph_score(ref + "бб", ref) == 1.0 and paragraph_score(ref + "ббб", ref) == 0.0
    assert char_match("abcd", "abxd") == pytest.approx(3 / 4)


def test_copy_items_are_reproducible_and_in_range():
    s1, p1 = build_copy_items(FORTUNES, n_sentences=3, n_paragraphs=2, seed=3, paragraph_chars=(50, 600))
    s2, p2 = build_copy_items(FORTUNES, n_sentences=3, n_paragraphs=2, seed=3, paragraph_chars=(50, 600))
    assert (s1, p1) == (s2, p2) and len(p1) == 2
    assert all(30 <= len(s) <= 200 for s in s1)


# -- ROUGE -----------------------------------------------------------------------------------
def test_rouge_known_values():
    pred, ref = "the cat was found under the bed".split(), "the cat was under the bed".split()
    # unigrams: 6 of 7 predicted match, all 6 reference ones: P=6/7, R=1
    assert rouge_n(pred, ref, 1) == pytest.approx(2 * (6 / 7) / (6 / 7 + 1))
    # bigrams: the-cat, cat-was, under-the, the-bed match: P=4/6, R=4/5
    assert rouge_n(pred, ref, 2) == pytest.approx(2 * (4 / 6) * (4 / 5) / (4 / 6 + 4 / 5))
    assert lcs_length(pred, ref) == 6
    assert rouge_l(pred, ref) == pytest.approx(rouge_n(pred, ref, 1))
    assert rouge("", "a b") == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    assert rouge("Кошка спит", "кошка спит")["rouge2"] == 1.0  # Cyrillic words count


def test_rouge_clips_repeated_ngrams():
    assert rouge_n(["a", "a", "a"], ["a"], 1) == pytest.approx(2 * (1 / 3) / (1 / 3 + 1))


def test_rouge_lemmatization_matches_inflections():
    plain = rouge("кошки сидели на окнах", "кошка сидит на окне")
    lemma = rouge("кошки сидели на окнах", "кошка сидит на окне", lemmatize=True)
    assert plain["rouge1"] == pytest.approx(0.25) and lemma["rouge1"] == 1.0
    assert tokenize("Кошки, СИДЕЛИ!", lemmatize=True) == ["кошка", "сидеть"]


# -- choice ----------------------------------------------------------------------------------
def test_macro_f1():
    assert choice_mod.macro_f1(["A", "B", "A", "B"], ["A", "B", "A", "B"]) == 1.0
    # A: tp=1 fp=1 fn=1 -> 0.5; B: tp=1 fp=1 fn=1 -> 0.5
    assert choice_mod.macro_f1(["A", "A", "B", "B"], ["A", "B", "A", "B"]) == 0.5
    assert choice_mod.macro_f1(["A", "A"], ["B", "B"]) == 0.0


class FakeLM:
    """Scores continuations from a table, to check what run_choice picks in each mode."""

    has_chat_template = False

    def __init__(self, table):
        self.table, self.requests = table, []

    def chat(self, prompt):
        return prompt

    def loglikelihood(self, reqs):
        self.requests.extend(reqs)
        return [(self.table[cont.strip()], False) for _, cont in reqs]


def test_choice_modes_use_label_probability_and_normalized_option_likelihood():
    item = {"question": "Q?", "options": {"A": "short", "B": "a much longer option"}, "answer": "B"}
    # label mode: B's label is more likely. option mode: raw A=-6 > B=-10, but per byte A=-1.2 < B=-0.5
    lm = FakeLM({"A": -2.0, "B": -1.0, "short": -6.0, "a much longer option": -10.0})
    res = choice_mod.run_choice(lm, [item])
    assert res["samples"][0]["pred_label"] == "B" and res["samples"][0]["pred_option"] == "B"
    assert res["metrics"]["acc_label"] == 1.0 and res["metrics"]["acc_option"] == 1.0
    label_ctx = [c for c, cont in lm.requests if cont.strip() in ("A", "B")][0]
    assert "A. short" in label_ctx and "B. a much longer option" in label_ctx
    lm2 = FakeLM({"A": -1.0, "B": -2.0, "short": -6.0, "a much longer option": -30.0})
    res2 = choice_mod.run_choice(lm2, [item])
    assert res2["metrics"]["acc_label"] == 0.0 and res2["metrics"]["acc_option"] == 0.0


def test_choice_on_tiny_model_is_consistent_with_loglikelihood(tiny):
    lm = HFLM(*tiny, name="tiny")
    items = build_completion_choice(FORTUNES, n=3, n_options=4, min_chars=40)
    res = choice_mod.run_choice(lm, items)
    assert 0.0 <= res["metrics"]["acc_label"] <= 1.0 and res["metrics"]["n"] == 3
    # Recompute label mode by hand for the first item.
    it = items[0]
    ctx = lm.chat(choice_mod.label_prompt(it))
    scores = {lab: lm.loglikelihood([(ctx, lab)])[0][0] for lab in it["options"]}
    assert res["samples"][0]["pred_label"] == max(scores, key=scores.get)


def test_completion_choice_builder():
    items = build_completion_choice(FORTUNES, n=5, n_options=4, min_chars=40, seed=1)
    assert len(items) == 5
    for it in items:
        assert list(it["options"]) == ["A", "B", "C", "D"] and it["answer"] in it["options"]
        assert len(set(it["options"].values())) == 4
        assert "Автор" not in it["question"] + "".join(it["options"].values())
    assert items == build_completion_choice(FORTUNES, n=5, n_options=4, min_chars=40, seed=1)
    with pytest.raises(VocadaptError, match="at least 4 documents"):
        build_completion_choice(FORTUNES[:2], min_chars=40)


# -- task files ------------------------------------------------------------------------------
def _write(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows),
                    encoding="utf-8")
    return path


def test_task_file_errors_name_the_line(tmp_path):
    ok = {"question": "q", "options": ["x", "y"], "answer": "A"}
    f = _write(tmp_path / "choice-x.jsonl", [ok, {"question": "q", "answer": "A"}])
    with pytest.raises(VocadaptError, match=r"choice-x.jsonl:2: missing field options"):
        load_dataset(f)
    f = _write(tmp_path / "choice-y.jsonl", [ok, "", {"question": "q", "options": ["x", "y"], "answer": "C"}])
    with pytest.raises(VocadaptError, match=r"choice-y.jsonl:3: answer 'C' is not among the option labels A, B"):
        load_dataset(f)
    f = _write(tmp_path / "choice-z.jsonl", ["{not json"])
    with pytest.raises(VocadaptError, match=r"choice-z.jsonl:1: not valid JSON"):
        load_dataset(f)
    f = _write(tmp_path / "summary-a.jsonl", [{"text": "t"}])
    with pytest.raises(VocadaptError, match=r"summary-a.jsonl:1: missing field summary"):
        load_dataset(f)
    with pytest.raises(VocadaptError, match="task kind"):
        load_dataset(_write(tmp_path / "other.jsonl", [ok]))


def test_task_file_formats(tmp_path):
    f = _write(tmp_path / "choice-idx.jsonl", [{"question": "q", "options": {"X": "x", "Y": "y"}, "answer": "Y"},
                                               {"question": "q", "options": ["x", "y", "z"], "answer": 2}])
    ds = load_dataset(f)
    assert ds.items[0]["answer"] == "Y" and ds.items[1]["answer"] == "C" and ds.name == "choice-idx"
    y = tmp_path / "choice-y.yaml"
    y.write_text("prompt: 'Q: {question}\\n{options}'\nitems:\n  - question: q\n    options: [a, b]\n    answer: B\n"
                 "  - question: q\n    options: [a, b]\n    answer: Z\n", encoding="utf-8")
    with pytest.raises(VocadaptError, match=r"choice-y.yaml: item 2: answer 'Z'"):
        load_dataset(y)


# -- the model interface ---------------------------------------------------------------------
def test_loglikelihood_matches_rolling_and_generation_is_greedy(tiny):
    lm = HFLM(*tiny, name="tiny")
    ctx, cont = "Умный в гору", " не пойдёт"
    (lp, greedy), = lm.loglikelihood([(ctx, cont)])
    # log p(ctx + cont) = log p(ctx) + log p(cont | ctx) when the tokenization splits there.
    whole, head = lm.loglikelihood_rolling([ctx + cont, ctx])
    if lm.encode(ctx + cont) == lm.encode(ctx) + lm.encode(cont):
        assert whole == pytest.approx(head + lp, rel=1e-5)
    assert lp < 0 and isinstance(greedy, bool)
    g1, g2 = lm.generate_until([(lm.chat("Повтори: кошка"), GenArgs(max_new_tokens=6))] * 2)
    assert g1.text == g2.text and 0 < g1.n_tokens <= 6 and g1.seconds > 0
    # A greedy generation is, token by token, what loglikelihood calls greedy.
    prompt = "Кто рано"
    g = lm.generate_until([(prompt, GenArgs(max_new_tokens=4, min_new_tokens=4))])[0]
    ids = lm.encode(g.text)
    if g.text and lm.encode(prompt) + ids == lm.encode(prompt + g.text):
        assert lm.loglikelihood([(prompt, g.text)])[0][1] is True


def test_generate_stops_at_until(tiny):
    lm = HFLM(*tiny, name="tiny")
    free = lm.generate_until([("Кто", GenArgs(max_new_tokens=12, min_new_tokens=12))])[0].text
    if len(free) > 3:
        stop = free[2:4]
        cut = lm.generate_until([("Кто", GenArgs(max_new_tokens=12, min_new_tokens=12, until=[stop]))])[0].text
        assert stop not in cut and free.startswith(cut)
    assert not math.isnan(len(free))
