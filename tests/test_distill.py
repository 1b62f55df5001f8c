"""Cross-tokenizer self-distillation (`vocadapt train --objective distill`) on tiny models."""

from __future__ import annotations

import json

import pytest
import torch

import factories as fx
from _traintiny import tiny_lm, write_corpus

from vocadapt.errors import VocadaptError
from vocadapt.train import TrainConfig, train_embeddings
from vocadapt.train.distill import ChunkAligner, align_chunks, chunk_loss


def small(**kw) -> TrainConfig:
    base = dict(steps=4, lr=1e-2, warmup_steps=0, seq_len=32, batch_size=4, eval_every=0, progress=False)
    base.update(kw)
    return TrainConfig(**base)


def _log(run):
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def _student(tmp_path, teacher_dir, name="student"):
    """A model with another tokenizer (SentencePiece-style BPE) whose init provenance names ``teacher_dir``."""
    from vocadapt.provenance import write_provenance

    tok = fx.sentencepiece_bpe(fx.corpus("ru", 200, seed=7), vocab_size=300)
    path = fx.save_model(fx.tiny_model("llama", len(tok), tied=False, seed=3), tok, tmp_path / name)
    write_provenance(path, "init", {"method": "mean"}, inputs={"source_model": teacher_dir, "target_tokenizer": path})
    return path


def test_align_chunks_by_common_boundaries():
    # "abcdef" as student ab|cdef (ends 2, 6) and teacher a|bc|def (ends 1, 3, 6): only 6 is
    # shared, so one chunk holds every token.
    s, t, n = align_chunks([2, 6], [1, 3, 6], scored_from_start=True)
    assert (s, t, n) == ([0, 0], [0, 0, 0], 1)
    # student ab|c|def, teacher a|bc|def: common ends 3 and 6 -> chunks "abc" and "def".
    s, t, n = align_chunks([2, 3, 6], [1, 3, 6], scored_from_start=True)
    assert (s, t, n) == ([0, 0, 1], [0, 0, 1], 2)
    # Without a start token the first token is unpredicted: its chunk is dropped on both sides.
    s, t, n = align_chunks([2, 3, 6], [1, 3, 6], scored_from_start=False)
    assert (s, t) == ([-1, -1, 1], [-1, -1, 1])
    # Tokens after the last common boundary are not scored.
    s, t, _ = align_chunks([3, 5], [3, 6], scored_from_start=True)
    assert s == [0, -1] and t == [0, -1]


def test_chunk_loss_zero_only_at_equal_likelihoods():
    t = torch.tensor([-3.0, -12.0, -0.5])
    for diff in ("binary-kl", "abs"):
        assert torch.allclose(chunk_loss(t, t.clone(), diff=diff), torch.zeros(3), atol=1e-7)
        worse = chunk_loss(t, t - 1.0, diff=diff)
        better = chunk_loss(t, t + 0.4, diff=diff)
        assert (worse > 0).all() and (better > 0).all() and torch.isfinite(worse).all()
    with pytest.raises(VocadaptError, match="unknown distillation loss"):
        chunk_loss(t, t, diff="kl")


def test_aligner_chunks_cover_the_same_text_on_both_sides(tmp_path):
    teacher = tiny_lm(tmp_path / "t")
    from vocadapt.model import start_token_id
    from vocadapt.tokenizer.load import load_tokenizer

    s_tok = load_tokenizer(_student(tmp_path, teacher), "student")
    t_tok = load_tokenizer(teacher, "teacher")
    aligner = ChunkAligner(s_tok, t_tok, start_token_id(s_tok), start_token_id(t_tok))
    texts = fx.corpus("ru", 6, seed=11)
    start = start_token_id(s_tok)
    block = []
    for text in texts:
        block += [start] + s_tok(text, add_special_tokens=False)["input_ids"]
    batch = aligner.batch([block[3:]])  # a block that starts inside a document
    assert batch.n_chunks > 10
    for side, tok in ((batch.student, s_tok), (batch.teacher, t_tok)):
        ids, ch = side.ids[0].tolist(), side.chunk[0].tolist()
        text_of = {}
        for c in sorted(set(ch) - {-1}):
            text_of[c] = tok.decode([i for i, k in zip(ids, ch) if k == c], clean_up_tokenization_spaces=False)
        side.text_of = text_of
    # Every scored chunk has tokens on both sides and spells the same text (up to the word marker).
    assert batch.student.text_of.keys() == batch.teacher.text_of.keys()
    for c, text in batch.student.text_of.items():
        assert text.strip() == batch.teacher.text_of[c].strip(), c


@pytest.mark.parametrize("hidden", ["none", "last"])
def test_identical_tokenizers_give_zero_loss_at_step_zero(tmp_path, hidden):
    teacher = tiny_lm(tmp_path / "t")
    corpus = write_corpus(tmp_path / "train.txt")
    run = tmp_path / "run"
    # float32: `auto` may put the teacher in bf16 (see below), which is not the student's precision.
    train_embeddings(teacher, corpus, run, small(steps=1, objective="distill", teacher=str(teacher), teacher_dtype="float32",
                                                 distill_hidden=hidden))
    (row,) = [r for r in _log(run) if "loss" in r]
    assert row["loss"] == pytest.approx(0.0, abs=1e-12)
    # The same run with the LM objective has a real loss: the zero is the distillation's.
    train_embeddings(teacher, corpus, tmp_path / "lm", small(steps=1))
    assert [r for r in _log(tmp_path / "lm") if "loss" in r][0]["loss"] > 1.0


def test_teacher_dtype_auto_is_bf16_only_where_bf16_is_fast(monkeypatch):
    from vocadapt.model import frozen_dtype
    from vocadapt.train.lm import resolve_teacher_dtype

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    for native in (True, False):
        monkeypatch.setattr("vocadapt.model.cpu_has_native_bf16", lambda: native)
        assert frozen_dtype("cpu") == ("bfloat16" if native else "float32")
        assert resolve_teacher_dtype("auto", cpu) == frozen_dtype("cpu")
        assert resolve_teacher_dtype("auto", cpu) == ("bfloat16" if native else "float32")
    for ampere in (True, False):  # bf16 only where the GPU has it natively (compute capability >= 8)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: ampere or including_emulation)
        assert resolve_teacher_dtype("auto", gpu) == ("bfloat16" if ampere else "float32")
    assert resolve_teacher_dtype("float32", gpu) == "float32"
    assert resolve_teacher_dtype("bfloat16", cpu) == "bfloat16"  # still False from the loop


def test_bf16_teacher_scores_close_to_fp32(tmp_path):
    """The precision `auto` may pick costs the distillation target little: with identical
    tokenizers and weights, a bf16 teacher's chunk log-likelihoods differ from the fp32 student's
    by a fraction of a millinat (``abs``: mean |t - s| per chunk), not by nothing."""
    teacher = tiny_lm(tmp_path / "t")
    corpus = write_corpus(tmp_path / "train.txt")
    run = tmp_path / "run"
    cfg = small(steps=1, objective="distill", teacher=str(teacher), teacher_dtype="bfloat16", distill_loss="abs")
    train_embeddings(teacher, corpus, run, cfg)
    (row,) = [r for r in _log(run) if "loss" in r]
    assert 0 < row["loss"] < 1e-2


@pytest.mark.parametrize(("objective", "hidden"), [("distill", "none"), ("lm+distill", "none"), ("distill", "last")])
def test_gradient_reaches_only_trainable_tensors(tmp_path, objective, hidden):
    from vocadapt.train.engine import _accelerator
    from vocadapt.train.lm import EmbeddingTask

    teacher = tiny_lm(tmp_path / "t")
    student = _student(tmp_path, teacher)
    corpus = write_corpus(tmp_path / "train.txt")
    # The teacher comes from the student's init provenance: no --teacher needed.
    task = EmbeddingTask(student, [corpus], small(objective=objective, trainable="embeddings", distill_hidden=hidden), None)
    model = task.setup(_accelerator("no"))
    batch = task.global_batch(0)
    loss = task.loss_sum(model, batch.micro[0][0])
    assert loss.item() > 0
    if hidden != "none":  # the hidden-state term adds to the likelihood term of the same micro-batch
        plain = EmbeddingTask(student, [corpus], small(objective=objective, trainable="embeddings"), None)
        plain.setup(_accelerator("no"))
        assert loss.item() > plain.loss_sum(model, batch.micro[0][0]).item() * 1.01
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert grads.pop("model.embed_tokens.weight").abs().sum() > 0
    assert all(g is None for g in grads.values()), [n for n, g in grads.items() if g is not None]
    assert all(p.grad is None and not p.requires_grad for p in task.teacher.parameters())


def test_hidden_term_compares_the_states_at_chunk_ends_only():
    from vocadapt.train.distill import chunk_ends, hidden_loss

    # Student: chunks 0, 0, 1, -1 | teacher: chunks 0, 1, 1, 1 (one row each).
    s_chunk, t_chunk = torch.tensor([[0, 0, 1, -1]]), torch.tensor([[0, 1, 1, 1]])
    assert chunk_ends(s_chunk, 2).tolist() == [1, 2]
    assert chunk_ends(t_chunk, 2).tolist() == [0, 3]
    gen = torch.Generator().manual_seed(0)
    t = torch.randn(1, 4, 8, generator=gen)
    s = torch.zeros(1, 4, 8)
    s[0, 1], s[0, 2] = t[0, 0], t[0, 3]  # the student reaches the teacher's states at the chunk ends
    assert torch.equal(hidden_loss(s, s_chunk, t, t_chunk, 2), torch.zeros(2))
    s[0, 0] += 5.0  # inside a chunk: not compared
    s[0, 3] += 5.0  # unscored
    assert torch.equal(hidden_loss(s, s_chunk, t, t_chunk, 2), torch.zeros(2))
    s[0, 2, 0] += 1.0  # the end of chunk 1
    loss = hidden_loss(s, s_chunk, t, t_chunk, 2)
    assert loss[0] == 0 and loss[1] == pytest.approx(1.0 / float(t[0, [0, 3]].pow(2).sum(-1).mean()))
    with pytest.raises(ValueError, match="needs objective distill"):
        small(distill_hidden="last")
    with pytest.raises(ValueError, match="distill_hidden must be one of"):
        small(objective="distill", distill_hidden="first")


def test_distillation_lowers_its_loss_and_records_the_objective(tmp_path):
    teacher = tiny_lm(tmp_path / "t")
    student = _student(tmp_path, teacher)
    corpus = write_corpus(tmp_path / "train.txt")
    run = tmp_path / "run"
    train_embeddings(student, corpus, run, small(steps=8, lr=3e-2, objective="distill", trainable="embeddings+head"))
    losses = [r["loss"] for r in _log(run) if "loss" in r]
    assert losses[-1] < losses[0]
    prov = json.loads((run / "model" / "vocadapt.json").read_text())
    assert prov["config"]["objective"] == "distill"
    assert prov["results"]["teacher_dtype"] in ("float32", "bfloat16")  # what `auto` became here
    # A resume must keep the objective.
    with pytest.raises(VocadaptError, match="cannot resume"):
        train_embeddings(student, corpus, run, small(steps=10, lr=3e-2, objective="lm"), resume=True)


def test_distill_without_a_known_teacher_is_one_clear_error(tmp_path):
    model = tiny_lm(tmp_path / "m")  # not made by `vocadapt init`: no source model on record
    corpus = write_corpus(tmp_path / "train.txt")
    with pytest.raises(VocadaptError, match="needs a teacher.*--teacher"):
        train_embeddings(model, corpus, tmp_path / "run", small(objective="distill"))
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="objective must be one of"):
        small(objective="kd")
