"""Continued BPE training (issue 18): the trainer's incremental pair counts and the pruning of
unreachable tokens, on small hand-made inputs. The end-to-end guarantees (no text longer, all
added tokens reachable) are tested on every layout in ``test_tokenizer_families.py``."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from vocadapt.tokenizer import build as C
from vocadapt.tokenizer.continue_bpe import _drop_unreachable, learn_merges, unreachable


def _recount_reference(words: Counter, add: int, min_frequency: int) -> list[tuple[str, str]]:
    """The textbook trainer: recount every pair before each merge (slow, obviously right)."""
    seqs = {tuple(w): n for w, n in words.items()}
    merges: list[tuple[str, str]] = []
    while len(merges) < add:
        counts: Counter = Counter()
        for w, n in seqs.items():
            for p in zip(w, w[1:]):
                if p not in merges:
                    counts[p] += n
        if not counts:
            break
        best = max(counts.values())
        if best < min_frequency:
            break
        pair = min(p for p, n in counts.items() if n == best)
        merges.append(pair)
        out: Counter = Counter()
        for w, n in seqs.items():
            new, j = [], 0
            while j < len(w):
                if j + 1 < len(w) and (w[j], w[j + 1]) == pair:
                    new.append(pair[0] + pair[1])
                    j += 2
                else:
                    new.append(w[j])
                    j += 1
            out[tuple(new)] += n
        seqs = out
    return merges


@settings(max_examples=200, deadline=None)
@given(
    words=st.dictionaries(st.lists(st.sampled_from("abcd"), min_size=2, max_size=9).map(tuple), st.integers(1, 5),
                          min_size=1, max_size=25),
    add=st.integers(1, 15),
    min_frequency=st.integers(1, 3),
)
def test_incremental_counts_match_full_recount(words, add, min_frequency):
    merges, new = learn_merges(Counter(words), add, vocab=set("abcd"), old_merges=set(), min_frequency=min_frequency)
    assert merges == _recount_reference(Counter(words), add, min_frequency)
    assert new == [a + b for a, b in merges]  # all results are new here


def test_learn_merges_respects_filters():
    words = Counter({("x", "y"): 10, ("п", "р"): 5, ("<", "s>"): 20})
    merges, new = learn_merges(words, 5, vocab={"x", "y", "п", "р", "<", "s>"}, old_merges=set(),
                               wanted=lambda t: any("а" <= c <= "я" for c in t), forbidden={"<s>"})
    assert merges == [("п", "р")] and new == ["пр"]


def test_drop_unreachable_removes_token_and_dependents():
    # Old merge a+b fires first on "abc" ([ab, c]), so a token "abc" made as a+bc is never
    # produced; "abca" built on it goes too; "bc" stays.
    tj = {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "c": 2, "ab": 3}, "merges": [["a", "b"]]}}
    new, merges, dropped = _drop_unreachable(tj, [], ["bc", "abc", "abca"], [("a", "b")],
                                             [("b", "c"), ("a", "bc"), ("abc", "a")], start=4)
    assert (new, merges, dropped) == (["bc"], [("b", "c")], 2)
    assert tj["model"]["vocab"] == {"a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4}
    assert C.bpe_merges(tj["model"]) == [("a", "b"), ("b", "c")]
    assert unreachable(tj, ["bc", "ab"]) == []


def test_wordpiece_piece_that_lengthens_a_corpus_word_is_dropped():
    # Greedy longest match: with "ab" added, "abcd" is ab ##c ##d (3) instead of a ##bcd (2).
    import copy

    from vocadapt.tokenizer.extend import _verified_pieces

    vocab = {"[UNK]": 0, "a": 1, "x": 2, "##bcd": 3, "##b": 4, "##c": 5, "##d": 6, "##y": 7}
    src = {"model": {"type": "WordPiece", "vocab": vocab, "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                     "max_input_chars_per_word": 100}, "pre_tokenizer": {"type": "WhitespaceSplit"}}
    ext, chosen, info = _verified_pieces(src, copy.deepcopy(src), {}, ["ab", "xy"], 2, ["abcd xy", "abcd"], 8, 0.0)
    assert chosen == ["xy"] and info["dropped_pieces"] == 1
    assert ext["model"]["vocab"]["xy"] == 8 and "ab" not in ext["model"]["vocab"]
