"""The offline default model: all-MiniLM-L6-v2 converted exactly into DistilBertForMaskedLM, plus a
masked-LM head trained here on English text from Debian packages (the body stays frozen, so its
sentence embeddings are all-MiniLM-L6-v2's)."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
HEAD_WEIGHTS = PACKAGE_DIR / "mlm_head.safetensors"
TRAINING_LOG = PACKAGE_DIR / "training_log.json"
HELDOUT_SLICE = PACKAGE_DIR / "heldout_slice.txt"
MODEL_ID = "distilserve/minilm-l6-distilbert-demo"
