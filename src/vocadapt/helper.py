"""Helper models for linear-regression transfer: ``train_helper`` (see :mod:`vocadapt.train.helper`)."""

from vocadapt.train.helper import HelperConfig, HelperResult, train_helper

__all__ = ["HelperConfig", "HelperResult", "train_helper"]
