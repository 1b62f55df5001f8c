"""Static word vectors: load any common format, train fastText on tokenized text, align spaces.

Used by the similarity-based init methods (FOCUS, WECHSEL, OFA). fastText, gensim and navec are
imported lazily, inside the functions that need them.
"""

from vocadapt.vectors.align import align_vectors, fit_alignment, procrustes, read_dictionary
from vocadapt.vectors.io import WordVectors, load_vectors, save_vectors
from vocadapt.vectors.train import train_token_vectors

__all__ = [
    "WordVectors",
    "align_vectors",
    "fit_alignment",
    "load_vectors",
    "procrustes",
    "read_dictionary",
    "save_vectors",
    "train_token_vectors",
]
