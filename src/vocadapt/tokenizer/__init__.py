"""Tokenizer building: train a target tokenizer, extend or optimize a model's own, measure them.

Public API (each mirrored by a ``vocadapt tokenizer`` subcommand):

* :func:`train_tokenizer` - a new BPE/Unigram tokenizer on the target corpus, ``like`` a source.
* :func:`extend_tokenizer` - append N target tokens; old ids and strings unchanged.
* :func:`optimize_tokenizer` - keep the K most used source tokens, then append M.
* :func:`tokenizer_stats` - characters/bytes per token, fertility, byte/unk share, overlap.
"""

from vocadapt.tokenizer.build import VOCAB_MAPPING_FILE, tokenizer_family
from vocadapt.tokenizer.extend import ExtendConfig, extend_tokenizer
from vocadapt.tokenizer.optimize import OptimizeConfig, optimize_tokenizer
from vocadapt.tokenizer.stats import tokenizer_stats
from vocadapt.tokenizer.train import TrainConfig, train_tokenizer

__all__ = [
    "VOCAB_MAPPING_FILE",
    "ExtendConfig",
    "OptimizeConfig",
    "TrainConfig",
    "extend_tokenizer",
    "optimize_tokenizer",
    "tokenizer_family",
    "tokenizer_stats",
    "train_tokenizer",
]
