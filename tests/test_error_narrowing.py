"""Bad input is a one-line user error; a bug in vocadapt (or in how it calls a library) is not.

Each place that turns a library's exceptions into a ``VocadaptError`` catches only what that
library raises for bad input. The tests give each one a bad input (it must still become a
``VocadaptError``) and an injected bug, an ``AttributeError`` or ``TypeError`` such as a wrong
call would raise (it must come through as itself, so the CLI reports it as a bug: exit 1 and
a traceback file, not exit 2 and "error: ...").
"""

from __future__ import annotations

import json

import factories as fx
import numpy as np
import pytest

from vocadapt.errors import VocadaptError


# --------------------------------------------------------------------------------------------
# vectors.io.load_vectors
# --------------------------------------------------------------------------------------------


def _w2v_text(path, rows=3, dim=4):
    lines = [f"{rows} {dim}"] + [f"w{i} " + " ".join(str(0.1 * (i + j)) for j in range(dim)) for i in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "name, content",
    [
        ("short.txt", "3 4\nw0 0.1 0.2 0.3 0.4\n"),  # the header promises 3 rows: gensim's EOFError
        ("words.txt", "2 4\nw0 a b c d\nw1 0 0 0 0\n"),  # not numbers: ValueError
        ("ragged.txt", "w0 0.1 0.2\nw1 0.1 0.2 0.3\n"),  # GloVe text with rows of two widths
        ("empty.txt", ""),
        ("cut.bin", b"2 4\nw0 " + np.ones(4, "<f4").tobytes() + b"\nw1 \x00\x00"),  # truncated word2vec binary
        ("header.bin", b"two four\n"),
        ("bad.npz", b"PK\x03\x04 not a zip"),
        ("nokeys.npz", None),  # a valid .npz without the words/matrix arrays
        ("bad.tar", b"not a tar archive"),
        ("bad.kv", b"not a pickle"),
    ],
)
def test_bad_vector_files_are_one_line_errors(tmp_path, name, content):
    from vocadapt.vectors.io import load_vectors

    path = tmp_path / name
    if content is None:
        np.savez(path, other=np.zeros(3))
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(VocadaptError) as e:
        load_vectors(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_a_bug_while_loading_vectors_is_not_a_user_error(tmp_path, monkeypatch):
    import vocadapt.vectors.io as vio

    path = _w2v_text(tmp_path / "v.txt")
    assert len(vio.load_vectors(path)) == 3

    def broken(kv, p, limit):
        return kv.no_such_attribute  # a wrong attribute name in vocadapt's own conversion

    monkeypatch.setattr(vio, "_from_keyed", broken)
    with pytest.raises(AttributeError, match="no_such_attribute"):
        vio.load_vectors(path)


def test_a_missing_vectors_extra_is_an_install_hint_not_a_crash(tmp_path, monkeypatch):
    import sys

    from vocadapt.vectors.io import load_vectors

    path = _w2v_text(tmp_path / "v.txt")
    for name in [m for m in sys.modules if m == "gensim" or m.startswith("gensim.")]:
        monkeypatch.setitem(sys.modules, name, None)  # as if gensim were not installed
    monkeypatch.setitem(sys.modules, "gensim", None)
    with pytest.raises(VocadaptError, match=r"needs the 'vectors' extra: pip install 'vocadapt\[vectors\]' \(gensim"):
        load_vectors(path)


# --------------------------------------------------------------------------------------------
# tokenizer.load.load_tokenizer
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_tokenizer():
    return fx.byte_level_bpe(fx.corpus("en", 80, seed=3), vocab_size=300)


def _saved(tok, folder):
    tok.save_pretrained(str(folder))
    return folder


def test_bad_tokenizer_folders_are_one_line_errors(tmp_path, small_tokenizer):
    from vocadapt.tokenizer.load import load_tokenizer

    cases = {}
    # valid JSON, not a tokenizer: transformers' KeyError, now a check before loading
    cases["empty"] = _saved(small_tokenizer, tmp_path / "empty")
    (cases["empty"] / "tokenizer.json").write_text("{}")
    # a merge of a piece the vocabulary lacks: tokenizers' own (bare Exception) parse error
    cases["merge"] = _saved(small_tokenizer, tmp_path / "merge")
    tj = json.loads((cases["merge"] / "tokenizer.json").read_text())
    tj["model"]["merges"].append(["no-such-piece", "x"])
    (cases["merge"] / "tokenizer.json").write_text(json.dumps(tj))
    # a broken tokenizer_config.json: json's ValueError inside transformers
    cases["config"] = _saved(small_tokenizer, tmp_path / "config")
    (cases["config"] / "tokenizer_config.json").write_text('{"model_max_length": ')
    for name, folder in cases.items():
        with pytest.raises(VocadaptError) as e:
            load_tokenizer(folder)
        assert str(folder) in str(e.value) and "\n" not in str(e.value), name


def test_a_bug_while_loading_a_tokenizer_is_not_a_user_error(tmp_path, monkeypatch, small_tokenizer):
    import transformers

    from vocadapt.tokenizer.load import load_tokenizer

    folder = _saved(small_tokenizer, tmp_path / "tok")
    assert load_tokenizer(folder).is_fast

    def broken(*args, **kwargs):
        raise AttributeError("'NoneType' object has no attribute 'backend'")  # an incompatible call

    monkeypatch.setattr(transformers.PreTrainedTokenizerFast, "from_pretrained", broken)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", broken)
    with pytest.raises(AttributeError):
        load_tokenizer(folder)


def test_the_cli_reports_such_a_bug_as_a_bug(tmp_path, monkeypatch, capsys, source_models, target_tokenizers):
    """Exit 1 and 'unexpected AttributeError ... please report it', not exit 2 'error: cannot load'."""
    import transformers

    from vocadapt.cli import main

    def broken(*args, **kwargs):
        raise AttributeError("'NoneType' object has no attribute 'backend'")

    monkeypatch.setattr(transformers.PreTrainedTokenizerFast, "from_pretrained", broken)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", broken)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        main(["init", str(source_models["gpt2-bytelevel-tied"]), str(target_tokenizers["byte_level"]), str(out)])
    err = capsys.readouterr().err
    assert e.value.code == 1, err
    assert "unexpected AttributeError" in err and "cannot load" not in err
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# tokenizer.build.build_tokenizer
# --------------------------------------------------------------------------------------------


def test_build_tokenizer_reports_bad_edits_and_lets_bugs_through(small_tokenizer, monkeypatch):
    import tokenizers

    from vocadapt.tokenizer import build
    from vocadapt.tokenizer.canonical import tokenizer_json

    tj = json.loads(json.dumps(tokenizer_json(small_tokenizer)))
    assert build.build_tokenizer(tj).get_vocab_size() == small_tokenizer.backend_tokenizer.get_vocab_size()
    bad = json.loads(json.dumps(tj))
    bad["model"]["merges"].append(["no-such-piece", "x"])  # an edit that broke the vocabulary
    with pytest.raises(VocadaptError, match="does not load"):
        build.build_tokenizer(bad)
    # A bug in the edit itself: a value JSON cannot hold.
    bug = json.loads(json.dumps(tj))
    bug["model"]["vocab"] = set(bug["model"]["vocab"])
    with pytest.raises(TypeError):
        build.build_tokenizer(bug)

    def broken(text):
        raise TypeError("from_str() takes 1 positional argument but 2 were given")

    monkeypatch.setattr(tokenizers.Tokenizer, "from_str", broken)
    with pytest.raises(TypeError):
        build.build_tokenizer(tj)


# --------------------------------------------------------------------------------------------
# propagate.lep.chat_template_text
# --------------------------------------------------------------------------------------------


def test_chat_template_text_skips_only_a_refused_system_turn(monkeypatch):
    from vocadapt.propagate.lep import chat_template_text

    tok = fx.byte_level_bpe(fx.corpus("en", 80, seed=3), vocab_size=300)
    tok.chat_template = fx.CHAT_TEMPLATE
    assert chat_template_text(tok) == ["system\n", "user\n", "assistant\n"]
    # A template that refuses a system turn (Gemma, Mistral): the second conversation still counts.
    tok.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    assert chat_template_text(tok) == ["user\n", "assistant\n"]
    # keep_chat on a tokenizer without a template, or with one that renders nothing: say so.
    tok.chat_template = None
    with pytest.raises(VocadaptError, match="no chat template"):
        chat_template_text(tok)
    tok.chat_template = "{{ raise_exception('no') }}"
    with pytest.raises(VocadaptError, match="renders no conversation"):
        chat_template_text(tok)
    # A bug (here: a wrong call) is not a reason to skip the chat tokens silently.
    tok.chat_template = fx.CHAT_TEMPLATE

    def broken(*args, **kwargs):
        raise TypeError("apply_chat_template() got an unexpected keyword argument 'tokenise'")

    monkeypatch.setattr(type(tok), "apply_chat_template", broken)
    with pytest.raises(TypeError):
        chat_template_text(tok)
