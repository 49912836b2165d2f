"""The benchmark's texts: a fixed mixed-length English set that ships in app/data/bench/.

Real traffic to an embedding service is mostly short sentences with a long tail of passages, and
the tail is what makes padding expensive. The set is built from two sources the repository already
ships, to a fixed token-length mix (all-MiniLM-L6-v2's tokenizer, [CLS] and [SEP] counted):
median about 25 tokens, p90 about 65, a tail to 250.

- STS-B test sentences (app/data/stsb/): news headlines, image captions, forum posts; short.
- Austen passages (model_export/default_model/heldout_slice.txt, public domain): runs of
  consecutive sentences from one paragraph, anywhere from one sentence to 250 tokens.

Rebuild (deterministic; only when a source or the recipe changes): python -m app.bench.build_texts
"""

from __future__ import annotations

import csv
import json
import random
import numpy as np


def load_bench_texts(limit: int | None = None) -> list[str]:
    """The shipped set in its fixed (arrival) order; a missing file stops the bench and names it."""
    from app.data import bench_texts_file

    try:
        path = bench_texts_file()
    except FileNotFoundError as error:
        raise SystemExit(f"bench: {error}") from None
    texts = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return texts[:limit] if limit else texts


def load_sentences(limit: int | None) -> list[str]:
    """The STS-B test split's unique sentences, shuffled with a fixed seed; without the file, exit."""
    from app.data import stsb_test_csv

    try:
        path = stsb_test_csv()
    except FileNotFoundError as error:
        raise SystemExit(f"bench: {error}") from None
    with path.open(newline="", encoding="utf-8") as handle:
        sentences = {cell.strip() for row in csv.reader(handle) for cell in row[:2] if cell.strip()}
    ordered = sorted(sentences)
    random.Random(0).shuffle(ordered)
    return ordered[:limit] if limit else ordered


def as_task(sentences: list[str], task: str, mask: str) -> list[str]:
    """Fill-mask inputs: the middle word of each text replaced by the mask token."""
    if task == "embed":
        return sentences
    out = []
    for sentence in sentences:
        words = sentence.split()
        words[len(words) // 2] = mask
        out.append(" ".join(words))
    return out


def length_stats(lengths: list[int]) -> dict[str, float]:
    values = np.asarray(lengths)
    return {"count": int(values.size), "median": float(np.median(values)), "p90": float(np.percentile(values, 90)),
            "max": int(values.max()), "mean": float(values.mean())}
