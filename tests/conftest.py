"""Session-wide fixtures: source models of every family and target tokenizers, built once."""

from __future__ import annotations

from pathlib import Path

import os
import signal

import pytest
from hypothesis import settings

import factories as fx
from _evaltiny import tiny, tiny_dir, tiny_dir_b  # noqa: F401  (fixtures shared by the eval tests)

# CI runs the same examples every time: a property failure there is reproducible, not luck.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

# The interrupt tests send SIGINT to this process and to CLI children. A suite started in the
# background (`make test &`, nohup) inherits SIGINT ignored, and Python then installs no handler,
# so Ctrl+C would never reach the code under test: give the suite (and, through exec, every child)
# Python's own handler back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# (case id, architecture, tokenizer family, tied head)
MODEL_CASES = [
    ("llama-bytelevel-tied", "llama", "byte_level", True),
    ("llama-sentencepiece-untied", "llama", "sentencepiece", False),
    ("qwen2-unigram-untied", "qwen2", "unigram", False),
    ("gpt2-bytelevel-tied", "gpt2", "byte_level", True),
    ("bert-wordpiece-mlm", "bert", "wordpiece", True),
]


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("vocadapt")


@pytest.fixture(scope="session")
def source_models(workdir) -> dict[str, Path]:
    """Saved tiny source models keyed by case id; tokenizers trained on mostly-English text."""
    out = {}
    texts = fx.corpus("en", 300) + fx.corpus("mixed", 100, seed=1)
    for case, arch, family, tied in MODEL_CASES:
        tok = fx.TOKENIZERS[family](texts)
        model = fx.tiny_model(arch, len(tok), tied)
        out[case] = fx.save_model(model, tok, workdir / "src" / case)
    return out


@pytest.fixture(scope="session")
def target_tokenizers(workdir) -> dict[str, Path]:
    """Russian-heavy target tokenizers of every family, saved as directories."""
    out = {}
    texts = fx.corpus("ru", 300, seed=2) + fx.corpus("mixed", 100, seed=3)
    for family, build in fx.TOKENIZERS.items():
        path = workdir / "tgt" / family
        build(texts).save_pretrained(path)
        out[family] = path
    return out


# The asset cache's folders of fetched assets (see vocadapt.assets); everything else a run puts
# in the cache (fastText models, GGUF conversions, tokenized corpora, error logs) is derived.
ASSET_FOLDERS = ("pip", "deb", "data", "models", "vectors")


@pytest.fixture(scope="session", autouse=True)
def hermetic_cache(tmp_path_factory):
    """Point $VOCADAPT_CACHE at a temporary folder for the whole session, so the suite leaves the
    user's cache untouched: the fetched assets are linked in (the real-asset tests read them, and
    a first fetch still lands in the user's cache), derived files stay in the temporary folder."""
    from vocadapt.cache import cache_dir

    real = cache_dir()
    tmp = tmp_path_factory.mktemp("cache")
    for name in ASSET_FOLDERS:
        (real / name).mkdir(exist_ok=True)
        (tmp / name).symlink_to(real / name, target_is_directory=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VOCADAPT_CACHE", str(tmp))
        yield tmp
    # Derived files are large (a fastText model is ~1 GB with its subword buckets) and pytest
    # keeps the last few temporary folders: free them now.
    import shutil

    for entry in tmp.iterdir():
        if not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink()
