"""The Accelerate engine and embedding-only training on tiny random models."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import load_file

from _traintiny import tiny_lm, write_corpus

from vocadapt.train import TrainConfig, train_embeddings


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VOCADAPT_CACHE", str(tmp_path / "cache"))


def small(**kw) -> TrainConfig:
    base = dict(steps=6, lr=1e-2, warmup_steps=1, seq_len=32, batch_size=4, eval_every=3, progress=False)
    base.update(kw)
    return TrainConfig(**base)


def test_trains_end_to_end(tmp_path):
    model = tiny_lm(tmp_path / "m")
    corpus = write_corpus(tmp_path / "train.txt")
    held = write_corpus(tmp_path / "held.txt", n=10, seed=99)
    res = train_embeddings(model, corpus, tmp_path / "run", small(), eval_text=held)
    assert res.steps == 6 and res.tokens > 0 and res.tokens_per_s > 0
    rows = [json.loads(l) for l in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "bpb" in r]
    assert [r["step"] for r in train_rows] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in evals] == [0, 3, 6]
    assert evals[-1]["bpb"] < evals[0]["bpb"]  # lr 1e-2 on a random model: held-out text gets likelier
    assert res.final_bpb == pytest.approx(evals[-1]["bpb"])
    # The exported model differs from the input only in the embedding.
    before, after = load_file(model / "model.safetensors"), load_file(res.model_dir / "model.safetensors")
    assert before.keys() == after.keys()
    for name in before:
        same = torch.equal(before[name], after[name])
        assert same == (name != "model.embed_tokens.weight"), name
    # The export loads as a standard HF model and scores exactly what the run logged.
    from vocadapt.corpus import read_texts
    from vocadapt.evaluate.bpb import bits_per_byte
    from vocadapt.model import load_model

    m, tok = load_model(tmp_path / "run")  # a run directory stands for its final model
    assert bits_per_byte(m, tok, read_texts([held]), max_length=32).bits_per_byte == pytest.approx(res.final_bpb, rel=1e-5)
    prov = json.loads((res.model_dir / "vocadapt.json").read_text())
    assert prov["step"] == "train" and prov["results"]["steps"] == 6 and prov["results"]["tokens"] == res.tokens


def _tensors(d):
    from vocadapt.io.checkpoint import Checkpoint

    ck = Checkpoint(d)
    return ck, {n: ck.read(n) for n in ck.tensors}


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("trainable", ["embeddings+head", "embeddings", "layers:0,-1"])
def test_trainable_sets_freeze_the_rest(tmp_path, tied, trainable):
    model = tiny_lm(tmp_path / "m", tied=tied)
    corpus = write_corpus(tmp_path / "train.txt", n=60)
    res = train_embeddings(model, corpus, tmp_path / "run", small(steps=2, trainable=trainable, eval_every=0))
    ck, before = _tensors(model)
    _, after = _tensors(res.model_dir)
    expect = {ck.vocab.input}
    if trainable != "embeddings" and ck.vocab.output:
        expect.add(ck.vocab.output)
    if trainable.startswith("layers"):
        expect |= {n for n in before if n.startswith(("model.layers.0.", "model.layers.1."))}
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    # Norm weights start at 1 and get no weight decay, but they do get gradients: all change.
    assert changed == expect


def test_new_rows_keeps_copied_rows(tmp_path, target_tokenizers):
    from vocadapt import init_embeddings
    from vocadapt.train.rows import new_row_ids

    for tied in (True, False):
        src = tiny_lm(tmp_path / f"src{tied}", tied=tied)
        init = tmp_path / f"init{tied}"
        init_embeddings(src, target_tokenizers["byte_level"], init, method="mean")
        corpus = write_corpus(tmp_path / "train.txt", n=60)
        res = train_embeddings(init, corpus, tmp_path / f"run{tied}", small(steps=2, trainable="new-rows", eval_every=0))
        ck, before = _tensors(init)
        _, after = _tensors(res.model_dir)
        from vocadapt.tokenizer.load import load_tokenizer

        new = new_row_ids(init, load_tokenizer(init))
        old = torch.ones(before[ck.vocab.input].shape[0], dtype=torch.bool)
        old[new] = False
        for name in ck.vocab.names():
            assert torch.equal(before[name][old], after[name][old]), name  # bit-identical copied rows
            assert not torch.equal(before[name][~old], after[name][~old]), name
        for name in set(before) - set(ck.vocab.names()):
            assert torch.equal(before[name], after[name]), name


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_copied_lr_moves_copied_rows_that_fraction_as_far(tmp_path, target_tokenizers, tied):
    from vocadapt import init_embeddings
    from vocadapt.errors import VocadaptError
    from vocadapt.tokenizer.load import load_tokenizer
    from vocadapt.train.rows import new_row_ids

    src = tiny_lm(tmp_path / "src", tied=tied)
    init = tmp_path / "init"
    init_embeddings(src, target_tokenizers["byte_level"], init, method="mean")
    corpus = write_corpus(tmp_path / "train.txt", n=60)
    ck, before = _tensors(init)
    new = new_row_ids(init, load_tokenizer(init))
    copied = torch.ones(before[ck.vocab.input].shape[0], dtype=torch.bool)
    copied[new] = False
    moved = {}
    for scale in (1.0, 0.1):
        res = train_embeddings(init, corpus, tmp_path / f"run{scale}",
                               small(steps=3, lr=1e-3, weight_decay=0.0, copied_lr=scale, eval_every=0))
        _, after = _tensors(res.model_dir)
        assert {n for n in before if not torch.equal(before[n], after[n])} == set(ck.vocab.names())
        for name in ck.vocab.names():
            moved[scale, name, "copied"] = float((after[name][copied] - before[name][copied]).abs().mean())
            moved[scale, name, "new"] = float((after[name][~copied] - before[name][~copied]).abs().mean())
    for name in ck.vocab.names():
        # Adam steps about lr per coordinate whatever the gradient's scale: a tenth of the rate is
        # about a tenth of the distance; the new rows move as far as before.
        assert 0.05 < moved[0.1, name, "copied"] / moved[1.0, name, "copied"] < 0.2, name
        assert 0.7 < moved[0.1, name, "new"] / moved[1.0, name, "new"] < 1.4, name
    # A resume keeps the multiplier; new-rows already freezes the copied rows.
    with pytest.raises(VocadaptError, match="cannot resume.*copied_lr"):
        train_embeddings(init, corpus, tmp_path / "run0.1", small(steps=3, lr=1e-3, weight_decay=0.0, eval_every=0),
                         resume=True)
    with pytest.raises(ValueError, match="new-rows freezes"):
        small(trainable="new-rows", copied_lr=0.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        small(copied_lr=1.5)


def test_layers_lr_moves_the_trained_layers_that_fraction_as_far(tmp_path):
    from vocadapt.errors import VocadaptError

    model = tiny_lm(tmp_path / "m")
    corpus = write_corpus(tmp_path / "train.txt", n=60)
    _, before = _tensors(model)
    layer = [n for n in before if ".layers.0." in n and before[n].ndim == 2]
    emb = [n for n in before if "embed_tokens" in n]
    assert layer and emb
    moved = {}
    for scale in (1.0, 0.1):
        res = train_embeddings(model, corpus, tmp_path / f"run{scale}",
                               small(steps=3, lr=1e-3, weight_decay=0.0, trainable="layers:0", layers_lr=scale,
                                     eval_every=0))
        _, after = _tensors(res.model_dir)
        for kind, names in (("layer", layer), ("emb", emb)):
            moved[scale, kind] = sum(float((after[n] - before[n]).abs().mean()) for n in names)
    # Adam steps about lr per coordinate: a tenth of the rate is about a tenth of the distance
    # for the layer, while the embeddings train at the full rate as before.
    assert 0.05 < moved[0.1, "layer"] / moved[1.0, "layer"] < 0.2
    assert 0.7 < moved[0.1, "emb"] / moved[1.0, "emb"] < 1.4
    with pytest.raises(VocadaptError, match="cannot resume.*layers_lr"):
        train_embeddings(model, corpus, tmp_path / "run0.1",
                         small(steps=3, lr=1e-3, weight_decay=0.0, trainable="layers:0", eval_every=0), resume=True)
    with pytest.raises(ValueError, match="applies to trainable layers"):
        small(layers_lr=0.5)
    with pytest.raises(ValueError, match="above 0 and at most 1"):
        small(trainable="layers:0", layers_lr=0.0)


def test_new_rows_needs_init_provenance(tmp_path):
    from vocadapt.errors import VocadaptError

    model = tiny_lm(tmp_path / "m")
    corpus = write_corpus(tmp_path / "train.txt", n=60)
    with pytest.raises(VocadaptError, match="no init provenance"):
        train_embeddings(model, corpus, tmp_path / "run", small(trainable="new-rows"))
    assert not (tmp_path / "run").exists()


def _losses(run_dir):
    rows = [json.loads(l) for l in (run_dir / "train_log.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r], [(r["step"], r["bpb"]) for r in rows if "bpb" in r]


def test_interrupt_and_resume_is_exact(tmp_path, monkeypatch):
    from vocadapt.train.lm import EmbeddingTask

    model = tiny_lm(tmp_path / "m", tied=False)
    corpus = write_corpus(tmp_path / "train.txt")
    held = write_corpus(tmp_path / "held.txt", n=6, seed=99)
    cfg = small(steps=6, eval_every=2, save_every=2)
    full = train_embeddings(model, corpus, tmp_path / "full", cfg, eval_text=held)

    original = EmbeddingTask.global_batch

    def ctrl_c_at_step_5(self, step):
        if step == 4:  # the 5th step: steps 1-4 are done, the last checkpoint is step 4
            raise KeyboardInterrupt
        return original(self, step)

    monkeypatch.setattr(EmbeddingTask, "global_batch", ctrl_c_at_step_5)
    with pytest.raises(KeyboardInterrupt, match=r"interrupted at step 4; checkpoint saved in .*step-000004 \(resume with --resume\)"):
        train_embeddings(model, corpus, tmp_path / "cut", cfg, eval_text=held)
    assert not (tmp_path / "cut" / "model").exists()
    monkeypatch.setattr(EmbeddingTask, "global_batch", original)

    from vocadapt.errors import VocadaptError

    with pytest.raises(VocadaptError, match="setting 'lr' was 0.01, now 0.02"):
        train_embeddings(model, corpus, tmp_path / "cut", small(steps=6, eval_every=2, save_every=2, lr=2e-2),
                         eval_text=held, resume=True)
    with pytest.raises(VocadaptError, match="use --resume"):
        train_embeddings(model, corpus, tmp_path / "cut", cfg, eval_text=held)
    resumed = train_embeddings(model, corpus, tmp_path / "cut", cfg, eval_text=held, resume=True)
    assert resumed.steps == full.steps and resumed.tokens == full.tokens
    assert _losses(tmp_path / "cut") == _losses(tmp_path / "full")
    _, a = _tensors(full.model_dir)
    _, b = _tensors(resumed.model_dir)
    assert all(torch.equal(a[n], b[n]) for n in a)
    # keep_checkpoints=2: the oldest checkpoint is gone, each remaining one holds an HF model.
    ckpts = sorted(p.name for p in (tmp_path / "cut" / "checkpoints").iterdir())
    assert ckpts == ["step-000004", "step-000006"]
    assert (tmp_path / "cut" / "checkpoints" / "step-000004" / "model" / "config.json").is_file()


def test_cli_plot_and_report(tmp_path, target_tokenizers, capsys):
    from vocadapt import init_embeddings
    from vocadapt.cli import main
    from vocadapt.evaluate.report import build_report

    src = tiny_lm(tmp_path / "src")
    corpus = write_corpus(tmp_path / "train.txt", n=60)
    held = write_corpus(tmp_path / "held.txt", n=4, seed=99)
    runs = []
    for method in ("mean", "random"):
        init = tmp_path / f"init-{method}"
        init_embeddings(src, target_tokenizers["byte_level"], init, method=method)
        run = tmp_path / f"run-{method}"
        main(["train", str(init), str(corpus), "--out", str(run), "--eval-text", str(held), "--steps", "2",
              "--seq-len", "32", "--batch-size", "2", "--eval-every", "1", "--no-progress"])
        assert "held-out bits per byte" in capsys.readouterr().out
        runs.append(run)
    png = tmp_path / "curves.png"
    main(["plot", *map(str, runs), "--out", str(png)])
    assert png.read_bytes()[:4] == b"\x89PNG"
    page = build_report(runs, tmp_path / "rep" / "report.html")
    assert "run-mean" in page.path.read_text()
    from vocadapt.evaluate.report import collect

    rows, logs = collect(runs)
    assert sorted(logs) == ["mean (run-mean)", "random (run-random)"]  # curves labelled by init method
    assert [(r["run"], r["kind"], r["method"]) for r in rows] == [("run-mean", "train", "mean"), ("run-random", "train", "random")]
    assert sorted(p.name for p in page.images) == ["bpb.png", "bpb_by_tokens.png", "loss.png"]
    # `vocadapt eval` takes the run directory itself for its final model.
    main(["eval", str(runs[0]), "--text", str(held), "--tasks", "bpb", "--out", str(tmp_path / "ev")])
    assert json.loads((tmp_path / "ev" / "summary.json").read_text())["models"][0]["metrics"]["bits_per_byte"] > 0


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    from safetensors.torch import save_file

    from vocadapt.cli import main
    from vocadapt.errors import VocadaptError

    model = tiny_lm(tmp_path / "m")
    corpus = write_corpus(tmp_path / "train.txt", n=60)
    out = tmp_path / "run"

    def refused(args, match):
        capsys.readouterr()  # drop what building the fixtures printed
        with pytest.raises(SystemExit) as e:
            # Small settings first: the case's own options come later and win.
            main(["train", str(args[0]), str(args[1]), "--out", str(out), "--no-progress", "--steps", "1",
                  "--seq-len", "32", *map(str, args[2:])])
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and err.startswith("error: ") and "\n" not in err and match in err, err
        assert not out.exists()

    refused([model, corpus, "--lr", "0"], "lr must be above 0")
    refused([model, corpus, "--steps", "0"], "steps must be at least 1")
    refused([model, corpus, "--trainable", "head"], "trainable must be one of")
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("Привет мир.\n", encoding="utf-8")
    refused([model, tiny, "--seq-len", "64"], "fewer than one block of seq_len=64")
    held = tmp_path / "held.txt"
    # A training document re-wrapped over two lines, and one inside a longer held-out document.
    docs = corpus.read_text(encoding="utf-8").split("\n%\n")
    first, rest = docs[3].split(" ", 1)
    held.write_text(f"{first}\n{rest}\n%\nA new opening line that was never trained on.\n{docs[5]}\n", encoding="utf-8")
    refused([model, corpus, "--eval-text", held], "held-out text overlaps the training corpus: 2 of 2 documents")
    # --heldout-overlap drop scores only the held-out documents not in the training text.
    ok = train_embeddings(model, corpus, tmp_path / "dropped", small(steps=1, heldout_overlap="drop"),
                          eval_text=[held, write_corpus(tmp_path / "new.txt", n=2, seed=77)])
    assert ok.final_bpb is not None
    refused([model, corpus, "--patience", "2"], "--patience watches the held-out loss: give held-out text with --eval-text")
    refused([model, corpus, "--export-model", "best"], "--export-model best watches the held-out loss")
    refused([model, corpus, "--export-model", "first"], "export_model must be one of auto, best, last")
    refused([model, corpus, "--trainable", "new-rows"], "no init provenance")
    refused([model, corpus, "--trainable", "layers:0,7"], "layer 7 does not exist")
    # A checkpoint whose embedding is stored under an unknown name.
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(model, broken)
    tensors = load_file(broken / "model.safetensors")
    tensors["model.embedding_matrix"] = tensors.pop("model.embed_tokens.weight")
    save_file(tensors, broken / "model.safetensors", metadata={"format": "pt"})
    refused([broken, corpus], "input embedding not found")
    with pytest.raises(VocadaptError, match="nothing to resume"):
        train_embeddings(model, corpus, out, small(), resume=True)


def test_engine_with_a_task_of_its_own(tmp_path):
    """The engine serves any Task: a linear regression, exported as a tensor file, in bf16 then fp32."""
    from pathlib import Path

    from vocadapt.train.engine import GlobalBatch, OptimConfig, Task, run

    class Regression(Task):
        name = "regression"

        def setup(self, accelerator):
            g = torch.Generator().manual_seed(0)
            self.x = torch.randn(64, 3, generator=g)
            self.y = self.x @ torch.tensor([1.0, -2.0, 0.5])
            return torch.nn.Linear(3, 1, bias=False)

        def global_batch(self, step):
            rows = torch.arange(step * 8, step * 8 + 8) % 64
            return GlobalBatch(micro=[[rows]], n_items=8, n_tokens=8)

        def loss_sum(self, model, rows):
            return ((model(self.x[rows])[:, 0] - self.y[rows]) ** 2).sum()

        def evaluate(self, model):
            with torch.no_grad():
                return {"val_loss": float(((model(self.x)[:, 0] - self.y) ** 2).mean())}

        def export(self, model, out_dir: Path):
            torch.save({"w": model.weight.detach(), **self.run_state}, out_dir / "w.pt")

    for precision in ("bf16", "no"):
        cfg = OptimConfig(steps=60, lr=0.1, warmup_steps=0, weight_decay=0, eval_every=20, mixed_precision=precision,
                          progress=False)
        res = run(Regression(), cfg, tmp_path / precision)
        saved = torch.load(tmp_path / precision / "model" / "w.pt")
        assert saved["step"] == 60 and res.metrics["val_loss"] < 0.05
        torch.testing.assert_close(saved["w"][0], torch.tensor([1.0, -2.0, 0.5]), atol=0.2, rtol=0)


def test_cli_ctrl_c_prints_the_resume_line(tmp_path, monkeypatch, capsys):
    from vocadapt.cli import main
    from vocadapt.train.lm import EmbeddingTask

    model = tiny_lm(tmp_path / "m")
    corpus = write_corpus(tmp_path / "train.txt", n=40)

    def ctrl_c(self, step):
        raise KeyboardInterrupt

    monkeypatch.setattr(EmbeddingTask, "global_batch", ctrl_c)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["train", str(model), str(corpus), "--out", str(tmp_path / "run"), "--seq-len", "32", "--no-progress"])
    assert e.value.code == 130
    assert f"interrupted at step 0; checkpoint saved in {tmp_path / 'run' / 'checkpoints' / 'step-000000'} " \
           "(resume with --resume)" in capsys.readouterr().err


def _record_served(monkeypatch) -> list[int]:
    """Make the training task record the token ids (not padding) of every batch it serves."""
    from vocadapt.train.lm import EmbeddingTask

    serve = getattr(EmbeddingTask.global_batch, "unrecorded", EmbeddingTask.global_batch)  # not a recorder's
    served: list[int] = []

    def recording(self, step):
        batch = serve(self, step)
        for row in batch.micro:
            for m in row:
                served.extend(m["input_ids"][m["labels"] != -100].tolist())
        return batch

    recording.unrecorded = serve
    monkeypatch.setattr(EmbeddingTask, "global_batch", recording)
    return served


def test_coverage_counts_the_new_rows_the_batches_show(tmp_path, target_tokenizers, monkeypatch):
    """The run records, before it trains, which new rows its batches will show the model; the
    count is that of the batches it then serves, and (untied, input only, no decay) exactly the
    rows it never shows come out of training unchanged."""
    from vocadapt import init_embeddings
    from vocadapt.provenance import read_provenance
    from vocadapt.tokenizer.load import load_tokenizer
    from vocadapt.train.rows import new_row_ids

    src = tiny_lm(tmp_path / "src", tied=False)
    init = tmp_path / "init"
    init_embeddings(src, target_tokenizers["byte_level"], init, method="mean")
    corpus = write_corpus(tmp_path / "train.txt", n=400)
    held = write_corpus(tmp_path / "held.txt", n=10, seed=99)
    shown = _record_served(monkeypatch)
    cfg = small(steps=3, batch_size=4, trainable="embeddings", weight_decay=0.0, eval_every=0)
    said = logging.Handler(logging.WARNING)
    said.emit = lambda record: warnings.append(record.getMessage())
    warnings: list[str] = []
    logging.getLogger("vocadapt").addHandler(said)
    try:
        res = train_embeddings(init, corpus, tmp_path / "run", cfg, eval_text=held)
    finally:
        logging.getLogger("vocadapt").removeHandler(said)
    cov = read_provenance(res.model_dir)["results"]["coverage"]
    # under half the rows shown: said loudly, with what to change
    assert [w for w in warnings if f"show the model {cov['new_rows_seen']} of its {cov['new_rows']} new tokens" in w
            and "more --steps" in w]
    new = set(new_row_ids(init, load_tokenizer(init)).tolist())
    assert cov["new_rows"] == len(new)
    assert cov["new_rows_seen"] == len(new & set(shown)) > 0
    assert cov["new_rows_seen"] < len(new)  # 3 small steps cannot show every row: the count means something
    assert 0 < cov["heldout_new_unseen"] < 1
    ck, before = _tensors(init)
    _, after = _tensors(res.model_dir)
    emb = ck.vocab.input
    changed = {i for i in new if not torch.equal(before[emb][i], after[emb][i])}
    # a row the batches show changes, unless its token only ever ends a block (nothing scores after it)
    assert changed <= new & set(shown) and len(changed) >= 0.9 * cov["new_rows_seen"]


def test_coverage_order_shows_more_new_rows_and_a_resume_keeps_it(tmp_path, target_tokenizers, monkeypatch):
    """``block_order="coverage"``: the same steps show the model more of its new rows, the run's
    count is still that of the batches it serves, and a resume refuses the other order."""
    from vocadapt import init_embeddings
    from vocadapt.errors import VocadaptError
    from vocadapt.provenance import read_provenance
    from vocadapt.tokenizer.load import load_tokenizer
    from vocadapt.train.rows import new_row_ids

    src = tiny_lm(tmp_path / "src")
    init = tmp_path / "init"
    init_embeddings(src, target_tokenizers["byte_level"], init, method="mean")
    corpus = write_corpus(tmp_path / "train.txt", n=400)
    new = set(new_row_ids(init, load_tokenizer(init)).tolist())
    seen = {}
    for order in ("random", "coverage"):
        shown = _record_served(monkeypatch)
        res = train_embeddings(init, corpus, tmp_path / order, small(steps=3, block_order=order, eval_every=0))
        seen[order] = read_provenance(res.model_dir)["results"]["coverage"]["new_rows_seen"]
        assert seen[order] == len(new & set(shown))
    assert seen["coverage"] > 1.2 * seen["random"]
    with pytest.raises(VocadaptError, match="cannot resume.*block_order"):
        train_embeddings(init, corpus, tmp_path / "coverage", small(steps=3, eval_every=0), resume=True)
    with pytest.raises(ValueError, match="block_order must be one of random, coverage"):
        small(block_order="rare-first")


def test_no_coverage_for_a_model_init_did_not_make(tmp_path):
    from vocadapt.provenance import read_provenance

    model = tiny_lm(tmp_path / "m")
    res = train_embeddings(model, write_corpus(tmp_path / "train.txt", n=60), tmp_path / "run", small(steps=1, eval_every=0))
    assert "coverage" not in read_provenance(res.model_dir)["results"]


def _overshoot(interrupt_at: int | None = None):
    """A one-weight task whose training pulls w from 0 to 2 while its val_loss is (w - 1)^2: the
    held-out loss falls, bottoms out near step 10 and rises again, as an over-trained model's does.
    ``interrupt_at``: raise a Ctrl-C in that step's forward pass (once)."""
    from pathlib import Path

    from vocadapt.train.engine import GlobalBatch, Task

    class Overshoot(Task):
        name = "overshoot"

        def setup(self, accelerator):
            self.calls = 0
            model = torch.nn.Linear(1, 1, bias=False)
            torch.nn.init.zeros_(model.weight)
            return model

        def global_batch(self, step):
            self.step = step
            return GlobalBatch(micro=[[torch.ones(4, 1)]], n_items=4, n_tokens=4)

        def loss_sum(self, model, x):
            if interrupt_at is not None and self.step == interrupt_at and not self.calls:
                self.calls += 1
                raise KeyboardInterrupt
            return ((model(x) - 2 * x) ** 2).sum()

        def evaluate(self, model):
            return {"val_loss": float((model.weight.detach()[0, 0] - 1) ** 2)}

        def export(self, model, out_dir: Path):
            torch.save({"w": float(model.weight.detach()[0, 0]), **self.run_state}, out_dir / "w.pt")

    return Overshoot()


def _overshoot_config(**kw):
    from vocadapt.train.engine import OptimConfig

    return OptimConfig(**{**dict(steps=60, lr=0.1, warmup_steps=0, schedule="constant", weight_decay=0, eval_every=2,
                                 progress=False), **kw})


def _evaluations(run_dir):
    rows = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    return {r["step"]: r["val_loss"] for r in rows if "val_loss" in r}


def test_patience_exports_the_best_evaluation_not_the_stop(tmp_path):
    from vocadapt.train.engine import checkpoint_dirs, run

    res = run(_overshoot(), _overshoot_config(patience=3), tmp_path / "auto")
    evals = _evaluations(tmp_path / "auto")
    best = min(evals, key=evals.get)
    saved = torch.load(tmp_path / "auto" / "model" / "w.pt")
    # Stopped three evaluations after the best; the model handed over is the best one's.
    assert res.stopped_early and res.steps == best + 3 * 2 and res.model_step == best == saved["step"]
    assert abs(saved["w"] - 1) < 0.1 and saved["metrics"]["val_loss"] == evals[best] < evals[res.steps]
    assert res.model_metrics["val_loss"] == evals[best] and res.metrics["val_loss"] == evals[res.steps]
    # The last checkpoint keeps the weights of the step training stopped at (for --resume).
    assert torch.load(checkpoint_dirs(tmp_path / "auto")[-1] / "model" / "w.pt")["step"] == res.steps

    # --export-model last: the stop's weights; --export-model best without patience: all 60 steps, the best kept.
    last = run(_overshoot(), _overshoot_config(patience=3, export_model="last"), tmp_path / "last")
    assert last.model_step == last.steps == torch.load(tmp_path / "last" / "model" / "w.pt")["step"] == res.steps
    full = run(_overshoot(), _overshoot_config(export_model="best"), tmp_path / "full")
    assert full.steps == 60 and not full.stopped_early
    assert full.model_step == best == torch.load(tmp_path / "full" / "model" / "w.pt")["step"]
    # Without patience or "best", the last step's model, as before.
    plain = run(_overshoot(), _overshoot_config(), tmp_path / "plain")
    assert plain.model_step == 60 == torch.load(tmp_path / "plain" / "model" / "w.pt")["step"]


def test_the_best_export_survives_a_ctrl_c_and_resume(tmp_path):
    """Interrupted after the best evaluation and before the stop: the resumed run hands over the
    same best model as an uninterrupted one (the best export and its bookkeeping are checkpointed)."""
    from vocadapt.train.engine import TrainingInterrupted, run

    whole = run(_overshoot(), _overshoot_config(patience=3), tmp_path / "whole")
    cut = whole.model_step + 3
    with pytest.raises(TrainingInterrupted):
        run(_overshoot(interrupt_at=cut), _overshoot_config(patience=3), tmp_path / "cut")
    resumed = run(_overshoot(), _overshoot_config(patience=3), tmp_path / "cut", resume=True)
    assert (resumed.steps, resumed.model_step) == (whole.steps, whole.model_step)
    assert torch.load(tmp_path / "cut" / "model" / "w.pt") == torch.load(tmp_path / "whole" / "model" / "w.pt")


def test_a_best_export_from_another_timeline_is_not_handed_over(tmp_path, caplog):
    from vocadapt.train.engine import BEST, STATE_FILE, _best_export

    (tmp_path / BEST / "model").mkdir(parents=True)
    (tmp_path / BEST / STATE_FILE).write_text(json.dumps({"step": 12}))
    assert _best_export(tmp_path, {"best_step": 12}) == tmp_path / BEST / "model"
    with caplog.at_level(logging.WARNING, logger="vocadapt"):
        assert _best_export(tmp_path, {"best_step": 10}) is None
    assert "no export of the best evaluation (step 10)" in caplog.text


def test_patience_needs_a_val_loss(tmp_path):
    from vocadapt.errors import VocadaptError
    from vocadapt.train.engine import run

    task = _overshoot()
    task.evaluate = lambda model: {}
    with pytest.raises(VocadaptError, match="--patience watches the held-out val_loss, but this run's evaluation has none"):
        run(task, _overshoot_config(patience=2), tmp_path / "run")
    assert not (tmp_path / "run" / "model").exists()
