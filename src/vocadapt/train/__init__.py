"""Training: the Accelerate engine (:mod:`.engine`) and embedding-only continued pretraining (:mod:`.lm`)."""

from __future__ import annotations

from vocadapt.train.lm import TrainConfig, TrainResult, train_embeddings

__all__ = ["TrainConfig", "TrainResult", "train_embeddings"]
