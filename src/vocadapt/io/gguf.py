"""GGUF input: convert a ``.gguf`` file into a standard HF directory once, then treat it as such.

transformers reads GGUF (dequantizing to float) when ``gguf`` and ``accelerate`` are installed.
The result is saved as safetensors with ``config.quantization_config`` dropped, because a config
that still says "gguf" makes ``from_pretrained`` look for the GGUF file again.
"""

from __future__ import annotations

from pathlib import Path

from vocadapt.errors import VocadaptError
from vocadapt.io.atomic import atomic_dir


def convert_gguf(gguf_file: Path, dest: Path, dtype: str = "bfloat16") -> Path:
    """Write ``gguf_file`` as an HF model directory at ``dest`` (skipped if it exists)."""
    gguf_file = Path(gguf_file)
    dest = Path(dest)
    if dest.exists():
        return dest
    if not gguf_file.is_file():
        raise VocadaptError(f"GGUF file not found: {gguf_file}")
    try:
        import gguf  # noqa: F401
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:
        raise VocadaptError(f"reading GGUF needs the 'gguf' extra: pip install 'vocadapt[gguf]' ({e.name} missing)") from None

    folder, name = str(gguf_file.parent), gguf_file.name
    with atomic_dir(dest) as tmp:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        config = AutoConfig.from_pretrained(folder, gguf_file=name)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.dtype = dtype
        # Rebuild from the clean config so nothing GGUF-specific survives in the saved model.
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
        model.load_state_dict(loaded.state_dict(), strict=False)
        model.tie_weights()
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return dest
