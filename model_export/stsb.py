"""STS-B evaluation of an exported model directory through onnxruntime (no torch).

Spearman correlation between the gold similarity scores and the cosine of the two sentences'
embeddings, as in the sentence-transformers benchmark. The CSV has header-less rows s1,s2,score.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from model_export.manifest import ATTENTION_MASK, INPUT_IDS, SENTENCE_EMBEDDING, verify_model_dir


def read_pairs(csv_path: Path) -> tuple[list[str], list[str], np.ndarray]:
    first, second, scores = [], [], []
    with open(csv_path, newline="", encoding="utf-8") as handle:
        for row in csv.reader(handle):
            first.append(row[0])
            second.append(row[1])
            scores.append(float(row[2]))
    return first, second, np.array(scores)


def embed(model_dir: Path, variant: str, sentences: list[str], batch_size: int = 64) -> np.ndarray:
    """Embeddings of `sentences` from `variant`, batched by length to keep padding small."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    manifest = verify_model_dir(model_dir, [variant])
    tokenizer = Tokenizer.from_file(str(model_dir / manifest.tokenizer_file))
    tokenizer.enable_truncation(manifest.max_length)
    tokenizer.enable_padding(pad_id=manifest.special_tokens.pad.id, pad_token=manifest.special_tokens.pad.token)
    session = ort.InferenceSession(str(model_dir / manifest.variant(variant).file), providers=["CPUExecutionProvider"])
    order = sorted(range(len(sentences)), key=lambda index: len(sentences[index]))
    result = np.zeros((len(sentences), manifest.arch.hidden_size), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        encodings = tokenizer.encode_batch([sentences[index] for index in chunk])
        feed = {
            INPUT_IDS: np.array([encoding.ids for encoding in encodings], dtype=np.int64),
            ATTENTION_MASK: np.array([encoding.attention_mask for encoding in encodings], dtype=np.int64),
        }
        (embeddings,) = session.run([SENTENCE_EMBEDDING], feed)
        result[chunk] = embeddings
    return result


def evaluate_model_dir(model_dir: Path, variant: str, csv_path: Path) -> float:
    """STS-B Spearman (cosine of embeddings vs gold scores) of one variant of a model directory."""
    from scipy.stats import spearmanr

    first, second, gold = read_pairs(csv_path)
    unique = sorted(set(first) | set(second))
    embeddings = embed(Path(model_dir), variant, unique)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    row = {sentence: index for index, sentence in enumerate(unique)}
    cosines = np.array([embeddings[row[a]] @ embeddings[row[b]] for a, b in zip(first, second, strict=True)])
    return float(spearmanr(cosines, gold).statistic)
