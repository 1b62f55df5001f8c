"""Fingerprints and recipe stage keys see the whole content of their inputs, and the vocadapt version.

Before, a weight file over 4 MiB was fingerprinted by its size and first MiB (a safetensors
header and the first tensors by offset), so an instruct model fine-tuned in its layers but not
its embeddings kept its fingerprint, and a recipe reused stages made from the old one; stage
keys held no version, so an upgrade reused stages the old code had made. Full hashes are cached
by (path, device, inode, size, mtime) in a SQLite file under the cache folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import vocadapt
from vocadapt import provenance
from vocadapt.recipe import plan as P

PAST = 1_600_000_000 * 10**9  # an mtime well outside the "racy" window


@pytest.fixture()
def own_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("VOCADAPT_CACHE", str(cache))
    return cache


@pytest.fixture()
def reads(monkeypatch):
    """Paths whose whole content was read to hash them, in order."""
    seen: list[Path] = []
    real = provenance.file_sha256

    def counting(path, limit=None):
        seen.append(Path(path))
        return real(path, limit)

    monkeypatch.setattr(provenance, "file_sha256", counting)
    return seen


def _model_dir(folder: Path, layer_value: float = 0.0) -> Path:
    """A model folder whose 6 MiB safetensors file holds a 1 MiB embedding first and a 5 MiB layer after it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 256, "hidden_size": 1024}))
    g = torch.Generator().manual_seed(0)
    layer = torch.randn(1024, 1280, generator=g)
    layer[-1, -1] = layer_value  # the last value of the file: far past the first MiB
    save_file({"model.embed_tokens.weight": torch.randn(256, 1024, generator=g), "model.layers.0.mlp.weight": layer},
              str(folder / "model.safetensors"))
    os.utime(folder / "model.safetensors", ns=(PAST, PAST))
    return folder


def test_a_change_deep_in_a_large_weight_file_changes_the_fingerprint_and_the_stage_key(tmp_path, own_cache):
    model = _model_dir(tmp_path / "instruct")
    weights = model / "model.safetensors"
    assert weights.stat().st_size > 5 << 20
    before_fp, before_file = provenance.fingerprint(model), P.file_fingerprint(str(model))
    stage = P.Stage("propagate:conversion", "propagate", tmp_path / "out", {"method": "conversion"},
                    files={"instruct": [str(model)]})
    before_key = P.stage_key(stage, {}, {str(model): before_file})

    _model_dir(model, layer_value=1.0)  # same size, same header, same first MiB; another mtime below
    os.utime(weights, ns=(PAST + 10**9, PAST + 10**9))
    after_file = P.file_fingerprint(str(model))
    assert provenance.fingerprint(model) != before_fp
    assert after_file != before_file
    assert P.stage_key(stage, {}, {str(model): after_file}) != before_key


def test_a_change_deep_in_a_large_text_file_changes_its_fingerprint(tmp_path, own_cache):
    text = tmp_path / "corpus.txt"
    body = ("строка текста\n" * 1_300_000).encode()  # ~ 24 MiB: past the 16 MiB the old key read
    text.write_bytes(body)
    os.utime(text, ns=(PAST, PAST))
    before = P.file_fingerprint(str(text))
    text.write_bytes(body[:-2] + b"!\n")
    os.utime(text, ns=(PAST + 10**9, PAST + 10**9))
    assert P.file_fingerprint(str(text)) != before


def test_large_files_are_hashed_once_then_found_in_the_cache(tmp_path, own_cache, reads):
    model = _model_dir(tmp_path / "m")
    weights = (model / "model.safetensors").resolve()
    first = provenance.fingerprint(model)
    assert reads == [weights]
    assert provenance.fingerprint(model) == first and provenance.fingerprint(model) == first
    assert reads == [weights]  # the second and third time: one stat and one lookup
    assert (own_cache / "file-hashes.sqlite").is_file()

    # A rewrite (new mtime) is hashed again, and its new hash replaces the stale entry.
    _model_dir(model, layer_value=2.0)
    os.utime(weights, ns=(PAST + 5 * 10**9, PAST + 5 * 10**9))
    assert provenance.fingerprint(model) != first
    assert reads == [weights, weights]
    provenance.fingerprint(model)
    assert reads == [weights, weights]


def test_a_file_written_just_now_is_not_cached(tmp_path, own_cache, reads):
    """Its mtime may not move when it is written again within the timestamp granularity."""
    big = tmp_path / "fresh.bin"
    big.write_bytes(os.urandom(5 << 20))
    provenance.content_sha256(big)
    provenance.content_sha256(big)
    assert len(reads) == 2


def test_an_unusable_cache_only_costs_time(tmp_path, own_cache, reads):
    own_cache.mkdir()
    (own_cache / "file-hashes.sqlite").write_bytes(b"not a database at all" * 100)
    model = _model_dir(tmp_path / "m")
    assert provenance.fingerprint(model) == provenance.fingerprint(model)
    assert len(reads) == 2


def test_concurrent_processes_share_the_cache(tmp_path, own_cache, reads):
    files = []
    for i in range(8):
        f = tmp_path / f"w{i}.bin"
        f.write_bytes(os.urandom(5 << 20))
        os.utime(f, ns=(PAST, PAST))
        files.append(str(f))
    code = "import sys; from vocadapt.provenance import content_sha256; [content_sha256(p) for p in sys.argv[1:]]"
    env = {**os.environ, "PYTHONPATH": str(Path(vocadapt.__file__).parent.parent)}
    procs = [subprocess.Popen([sys.executable, "-c", code, *files[i % 2::2], *files], env=env) for i in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    digests = [provenance.content_sha256(f) for f in files]
    assert reads == []  # every hash came from the cache the four processes wrote
    assert digests == [hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in files]


def test_a_new_vocadapt_version_reruns_every_stage(tmp_path, source_models, target_tokenizers, monkeypatch):
    import factories as fx
    import yaml

    from vocadapt.recipe import load_recipe, plan_recipe, run_recipe

    text = tmp_path / "a.txt"
    text.write_text("\n%\n".join(fx.corpus("ru", 30, seed=5)) + "\n", encoding="utf-8")
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({
        "name": "t", "out": str(tmp_path / "out"), "source_model": str(source_models["llama-bytelevel-tied"]),
        "corpus": [str(text)], "heldout": {"ru": [str(text)]},
        "tokenizer": {"mode": "path", "path": str(target_tokenizers["byte_level"])},
        "init": [{"method": "mean"}], "eval": {"tasks": ["bpb"], "progress": False, "max_docs": 5},
    }, allow_unicode=True), encoding="utf-8")
    run_recipe(load_recipe(path))
    done = plan_recipe(load_recipe(path)).stages
    assert done and not any(s.run for s in done)
    old = vocadapt.__version__
    monkeypatch.setattr(vocadapt, "__version__", "99.0")
    stages = plan_recipe(load_recipe(path)).stages
    assert [s.id for s in stages] == [d.id for d in done]
    assert all(s.key != d.key for s, d in zip(stages, done))
    assert all(s.run and s.why == f"made by vocadapt {old}, this is 99.0" for s in stages)
