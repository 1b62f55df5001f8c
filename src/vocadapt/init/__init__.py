"""Embedding initialization for a new vocabulary: the registry, the context, the methods."""

from vocadapt.init.context import InitContext, Rows, combine_rows, random_rows
from vocadapt.init.core import InitReport, init_embeddings, load_tokenizer
from vocadapt.init.registry import MethodSpec, get_method, methods, register

__all__ = [
    "InitContext", "InitReport", "MethodSpec", "Rows", "combine_rows", "get_method", "init_embeddings",
    "load_tokenizer", "methods", "random_rows", "register",
]
