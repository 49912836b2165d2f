"""Build the benchmark's text set (app/data/bench/bench-texts.jsonl) from the repository's own sources.

    python -m app.bench.build_texts

Deterministic (fixed seed); run it only when a source or the recipe changes, and update
app/data/bench/README.md with the figures it prints.
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.bench.texts import length_stats, load_sentences

TARGET_MEDIAN = 25
TARGET_P90 = 65
MAX_TOKENS = 250
MIN_TOKENS = 6
TEXT_COUNT = 1200
SEED = 20261130
# Whitespace after a sentence's end (and its closing quote), before a capital: kept text loses nothing.
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"'_)]))\s+(?=[\"'_(]*[A-Z])")


@dataclass(frozen=True)
class BenchText:
    text: str
    source: str  # "stsb" or "austen"
    tokens: int  # with [CLS] and [SEP]


def _bert_uncased_counter() -> Callable[[list[str]], list[int]]:
    from tokenizers.implementations import BertWordPieceTokenizer

    from app.data import bert_uncased_vocab

    # The same vocabulary and normalisation as all-MiniLM-L6-v2's tokenizer (tests/app/gpu_check checks it).
    tokenizer = BertWordPieceTokenizer.from_file(str(bert_uncased_vocab()), lowercase=True)
    return lambda texts: [len(encoding.ids) for encoding in tokenizer.encode_batch(texts)]


def _austen_spans(paragraphs: list[str], count: Callable[[list[str]], list[int]], rng: random.Random) -> list[str]:
    """Each paragraph cut into runs of consecutive sentences, each run aiming at a length drawn from a
    long-tailed distribution, so the passages cover every length up to MAX_TOKENS."""
    spans = []
    for paragraph in paragraphs:
        sentences = [part.strip() for part in _SENTENCE_END.split(paragraph) if part.strip()]
        lengths = [n - 2 for n in count(sentences)]
        start = 0
        while start < len(sentences):
            aim = min(MAX_TOKENS, max(MIN_TOKENS, round(rng.lognormvariate(np.log(70), 0.7))))
            end, total = start + 1, lengths[start] + 2
            while end < len(sentences) and total + lengths[end] <= aim:
                total += lengths[end]
                end += 1
            spans.append(" ".join(sentences[start:end]))
            start = end
    return spans


def build_bench_texts(stsb: list[str], austen_paragraphs: list[str], count: int = TEXT_COUNT,
                      seed: int = SEED) -> list[BenchText]:
    """`count` texts whose token lengths follow a log-normal with the target median and p90, cut at
    MAX_TOKENS: each drawn length takes the unused candidate closest to it. Arrival order is shuffled."""
    rng = random.Random(seed)
    counter = _bert_uncased_counter()
    candidates = [(text, "stsb") for text in stsb] + [(text, "austen") for text in _austen_spans(austen_paragraphs, counter, rng)]
    lengths = counter([text for text, _ in candidates])
    pool = sorted((n, rng.random(), text, source) for (text, source), n in zip(candidates, lengths, strict=True)
                  if MIN_TOKENS <= n <= MAX_TOKENS)
    sigma = np.log(TARGET_P90 / TARGET_MEDIAN) / 1.2816  # z of the 90th percentile
    wanted = sorted(min(MAX_TOKENS, max(MIN_TOKENS, round(rng.lognormvariate(np.log(TARGET_MEDIAN), sigma))))
                    for _ in range(count))
    wanted[-1] = MAX_TOKENS  # the tail reaches the limit, whatever the draw
    chosen = []
    for target in reversed(wanted):  # longest first: long candidates are the scarce ones
        pool_lengths = [entry[0] for entry in pool]
        index = int(np.searchsorted(pool_lengths, target))
        nearest = min((i for i in (index - 1, index) if 0 <= i < len(pool)), key=lambda i: abs(pool[i][0] - target))
        n, _, text, source = pool.pop(nearest)
        chosen.append(BenchText(text, source, n))
    rng.shuffle(chosen)
    return chosen


def build_from_repository(out: Path) -> list[BenchText]:
    """Build the set from the repository's own sources and write it as JSON lines."""
    from model_export.default_model import HELDOUT_SLICE

    paragraphs = [line.strip() for line in HELDOUT_SLICE.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = build_bench_texts(load_sentences(None), paragraphs)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps({"text": t.text, "source": t.source, "tokens": t.tokens}) + "\n" for t in texts),
                   encoding="utf-8")
    return texts


def main() -> int:
    from app.data import BENCH_TEXTS

    texts = build_from_repository(BENCH_TEXTS)
    stats = length_stats([t.tokens for t in texts])
    sources = {name: sum(t.source == name for t in texts) for name in ("stsb", "austen")}
    print(f"wrote {BENCH_TEXTS}: {stats['count']} texts ({sources}); tokens median {stats['median']:.0f}, "
          f"p90 {stats['p90']:.0f}, max {stats['max']}, mean {stats['mean']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
