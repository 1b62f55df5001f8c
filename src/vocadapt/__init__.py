"""vocadapt: adapt a pretrained language model to a new language by vocabulary surgery.

The package follows the pipeline: ``tokenizer`` (train / extend / optimize a target tokenizer)
-> ``init`` (initialize embeddings of the new vocabulary) -> ``train`` (embedding-only continued
pretraining) -> ``propagate`` (move learned embeddings into the instruct model) -> ``evaluate``
(bits per byte, characters per token, Darumeru-style tasks). ``io`` reads and writes checkpoints.
"""

__version__ = "0.1.0"
