"""The bench's results: one table, one JSON document, every throughput as a ratio to its ceiling, and
the issue's targets checked in the summary."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from app.bench.rows import Row

EMBED = "embed"
FILL_MASK = "fill-mask"
# Targets from the CPU throughput issue; the summary says how far each is.
TARGET_RATIO = 0.85
TARGET_PADDING = 0.15
TARGET_P50_OVER_RAW_MS = 3.0
TARGET_FILL_MASK_OVER_PIPELINE = 3.0


@dataclass
class Section:
    """The rows for one task on one model, with the ceiling they are measured against."""

    task: str
    model_id: str
    variant: str
    ceiling: Row
    rows: list[Row] = field(default_factory=list)

    def ratio(self, row: Row) -> float:
        return row.throughput / self.ceiling.throughput

    def http(self, mode: str = "http", sentences_per_request: int = 1) -> list[Row]:
        return [row for row in self.rows if row.mode == mode and row.sentences_per_request == sentences_per_request]

    def first(self, mode: str) -> Row | None:
        return next((row for row in self.rows if row.mode == mode), None)


def row_dict(section: Section, row: Row) -> dict[str, Any]:
    fields = {"task": section.task, **asdict(row), "ratio_to_ceiling": section.ratio(row)}
    # Strict JSON has no NaN: a figure that was not measured (a peer's padding) is null.
    return {key: None if isinstance(value, float) and math.isnan(value) else value for key, value in fields.items()}


def summarize(sections: list[Section]) -> dict[str, Any]:
    """The issue's targets, each measured value beside its target (None when not measured)."""
    summary: dict[str, Any] = {}
    embed = next((section for section in sections if section.task == EMBED), None)
    if embed is not None:
        loaded = [row for row in embed.http() if row.concurrency >= 8]
        throughputs = [row.throughput for row in sorted(embed.http(), key=lambda row: row.concurrency)]
        at_one = next((row for row in embed.http() if row.concurrency == 1), None)
        raw_single = next((row for row in embed.rows if row.mode == "raw" and row.concurrency == 1), None)
        st = embed.first("sentence-transformers")
        summary.update({
            "ceiling_sentences_per_s": embed.ceiling.throughput,
            "min_ratio_from_c8": min((embed.ratio(row) for row in loaded), default=None),
            "min_ratio_target": TARGET_RATIO,
            "max_padding_waste_from_c8": max((row.padding_waste for row in loaded), default=None),
            "padding_waste_target": TARGET_PADDING,
            "throughput_never_falls": all(b >= a for a, b in zip(throughputs, throughputs[1:])),
            "p50_c1_minus_raw_ms": at_one.p50_ms - raw_single.p50_ms if at_one and raw_single else None,
            "p50_target_ms": TARGET_P50_OVER_RAW_MS,
            "sentence_transformers_ratio": embed.ratio(st) if st else None,
        })
        infinity = {row.concurrency: row for row in embed.http("infinity")}
        if infinity:
            summary["over_infinity"] = {str(row.concurrency): row.throughput / infinity[row.concurrency].throughput
                                        for row in embed.http() if row.concurrency in infinity}
    fill_mask = next((section for section in sections if section.task == FILL_MASK), None)
    if fill_mask is not None:
        http, pipeline = fill_mask.first("http"), fill_mask.first("fill-mask-pipeline")
        summary.update({
            "fill_mask_http_over_pipeline": http.throughput / pipeline.throughput if http and pipeline else None,
            "fill_mask_target": TARGET_FILL_MASK_OVER_PIPELINE,
        })
    return summary


def document(environment: dict[str, Any], texts: dict[str, Any], sections: list[Section],
             skipped: dict[str, str]) -> dict[str, Any]:
    return {
        "environment": environment,
        "texts": texts,
        "models": {section.task: {"model_id": section.model_id, "variant": section.variant} for section in sections},
        "ceilings": {section.task: row_dict(section, section.ceiling) for section in sections},
        "rows": [row_dict(section, row) for section in sections for row in [section.ceiling, *section.rows]],
        "skipped": skipped,
        "summary": summarize(sections),
    }


def _number(value: float, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def render(sections: list[Section]) -> str:
    header = (f"{'task':<9} {'mode':<21} {'conc':>5} {'sent/req':>8} {'requests':>8} {'sent/s':>8} {'x ceil':>6} "
              f"{'p50 ms':>8} {'p99 ms':>8} {'batch':>6} {'pad waste':>9}  note")
    lines = [header, "-" * len(header)]
    for section in sections:
        for row in [section.ceiling, *section.rows]:
            in_process = row.mode in ("raw", "ceiling", "sentence-transformers")
            conc = f"b{row.concurrency}" if in_process and row.concurrency > 1 else str(row.concurrency)
            lines.append(
                f"{section.task:<9} {row.mode:<21} {conc:>5} {row.sentences_per_request:>8} {row.requests:>8} "
                f"{row.throughput:>8.1f} {section.ratio(row):>6.2f} {row.p50_ms:>8.2f} {row.p99_ms:>8.2f} "
                f"{_number(row.mean_batch, '.1f'):>6} {_number(row.padding_waste, '.1%'):>9}  {row.note}"
            )
    return "\n".join(lines)


def render_summary(summary: dict[str, Any]) -> str:
    def line(label: str, key: str, spec: str, target: str) -> str:
        return f"{label}: {_number(summary.get(key), spec)} (target {target})"

    lines = []
    if "min_ratio_from_c8" in summary:
        lines += [
            line("HTTP / ceiling, lowest from concurrency 8", "min_ratio_from_c8", ".2f", f">= {TARGET_RATIO}"),
            line("padding waste, highest from concurrency 8", "max_padding_waste_from_c8", ".1%", f"< {TARGET_PADDING:.0%}"),
            f"throughput never falls as concurrency rises: {summary['throughput_never_falls']}",
            line("p50 at concurrency 1 - raw single latency, ms", "p50_c1_minus_raw_ms", ".2f", f"<= {TARGET_P50_OVER_RAW_MS:g}"),
        ]
    if "fill_mask_http_over_pipeline" in summary:
        lines.append(line("fill-mask HTTP / transformers pipeline", "fill_mask_http_over_pipeline", ".2f",
                          f">= {TARGET_FILL_MASK_OVER_PIPELINE:g}"))
    for concurrency, ratio in summary.get("over_infinity", {}).items():
        lines.append(f"over Infinity at concurrency {concurrency}: {ratio:.2f} (target >= 2)")
    return "\n".join(lines)
