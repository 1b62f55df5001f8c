"""``vocadapt vectors train`` and ``vocadapt vectors align``: static vectors for FOCUS/WECHSEL/OFA."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    vectors = typer.Typer(help="Static word vectors: fastText on tokenized text, Procrustes alignment.", no_args_is_help=True)
    app.add_typer(vectors, name="vectors")

    @vectors.command("train")
    def train(
        corpus: list[Path] = typer.Argument(..., help="Target-language text: files or folders."),
        tokenizer: Path = typer.Option(..., "--tokenizer", help="Tokenizer directory or tokenizer.json to tokenize the text with."),
        out: Path = typer.Option(..., "--out", help="Where to write the fastText model (.bin)."),
        dim: int = typer.Option(100, help="Vector dimension."),
        epochs: int = typer.Option(3, help="Training epochs."),
        min_count: int = typer.Option(10, "--min-count", help="Tokens rarer than this get no vector."),
        threads: int = typer.Option(2, help="Training threads (1: reproducible)."),
    ) -> None:
        """Train fastText CBOW on CORPUS tokenized by TOKENIZER (FOCUS's auxiliary vectors)."""
        from vocadapt.init.core import load_tokenizer
        from vocadapt.vectors.io import load_vectors
        from vocadapt.vectors.train import train_token_vectors

        tok = load_tokenizer(tokenizer, "tokenizer")
        path = train_token_vectors(corpus, tok, out, dim=dim, epochs=epochs, min_count=min_count, threads=threads)
        wv = load_vectors(path)
        n_vocab = len(tok.get_vocab())
        typer.echo(f"wrote {path}: vectors for {len(wv)} token types of {n_vocab} in the vocabulary ({100 * len(wv) / max(n_vocab, 1):.1f}%)")

    @vectors.command("align")
    def align(
        source_vectors: Path = typer.Argument(..., help="Source-language word vectors (any supported format)."),
        target_vectors: Path = typer.Argument(..., help="Target-language word vectors."),
        dictionary: Path = typer.Option(..., "--dictionary", help="Bilingual dictionary: source<TAB>target lines or dictd .dict.dz."),
        out: Path = typer.Option(..., "--out", help="Output file: word2vec binary if it ends in .bin, else text."),
        multilingual: bool = typer.Option(False, "--multilingual", help="Write both spaces in one file with 'lang:word' keys (for OFA)."),
        source_lang: str = typer.Option("eng", "--source-lang", help="Key prefix of source words in a multilingual file."),
        target_lang: str = typer.Option("rus", "--target-lang", help="Key prefix of target words in a multilingual file."),
        normalize: bool = typer.Option(True, help="Fit on unit-length vectors."),
    ) -> None:
        """Map SOURCE_VECTORS into TARGET_VECTORS' space by orthogonal Procrustes on a dictionary."""
        from vocadapt.vectors.align import align_vectors, multilingual as merge, read_dictionary
        from vocadapt.vectors.io import load_vectors, save_vectors

        src, tgt = load_vectors(source_vectors), load_vectors(target_vectors)
        pairs = read_dictionary(dictionary)
        mapped, report = align_vectors(src, tgt, pairs, normalize=normalize)
        save_vectors(merge(mapped, tgt, source_lang, target_lang) if multilingual else mapped, out)
        typer.echo(
            f"aligned on {report['pairs_used']} pairs present in both spaces (of {report['pairs_given']} in the dictionary); "
            f"mean cosine of aligned pairs {report['mean_pair_cosine']:.3f}; wrote {out}"
        )
