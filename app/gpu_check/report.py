"""The check's results: one JSON document and a markdown rendering of it, rewritten after every phase
so that a run cut short still leaves what it measured.

    gpu-check.json   environment, plan, checks, gates, placements, servers, raw/http/mixed cells, skipped
    gpu-check.md     the same as tables (what docs/gpu.md takes)
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

JSON_FILE = "gpu-check.json"
MARKDOWN_FILE = "gpu-check.md"


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class Report:
    environment: dict[str, Any]
    plan: dict[str, Any]
    checks: list[Check] = field(default_factory=list)
    gates: list[Any] = field(default_factory=list)
    placements: list[dict[str, Any]] = field(default_factory=list)
    servers: list[dict[str, Any]] = field(default_factory=list)
    raw: list[Any] = field(default_factory=list)
    http: list[Any] = field(default_factory=list)
    mixed: list[Any] = field(default_factory=list)
    skipped: list[Any] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)  # seconds each phase took
    finished: bool = False

    def check(self, name: str, passed: bool, detail: str = "") -> bool:
        self.checks.append(Check(name, passed, detail))
        return passed

    @property
    def passed(self) -> bool:
        return self.finished and all(check.passed for check in self.checks)

    def as_dict(self) -> dict[str, Any]:
        data = {name: _plain(getattr(self, name)) for name in self.__dataclass_fields__}
        data["passed"] = self.passed
        return data

    def save(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        data = self.as_dict()
        (out / JSON_FILE).write_text(json.dumps(data, indent=1, allow_nan=False) + "\n")
        (out / MARKDOWN_FILE).write_text(render_markdown(data))


def _plain(value: Any) -> Any:
    """JSON-ready: dataclasses as dicts, NaN and infinities as null."""
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def _groups(cells: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for cell in cells:
        groups.setdefault((cell["model"], cell["variant"], cell["provider"]), []).append(cell)
    return groups


def _grid_table(cells: list[dict[str, Any]], row_key: str, row_label: str, value: Any) -> list[str]:
    seqs = sorted({cell["seq"] for cell in cells})
    rows = sorted({cell[row_key] for cell in cells})
    by_key = {(cell[row_key], cell["seq"]): cell for cell in cells}
    lines = [f"| {row_label} | " + " | ".join(f"seq {seq}" for seq in seqs) + " |", "|---" * (len(seqs) + 1) + "|"]
    for row in rows:
        lines.append(f"| {row} | " + " | ".join(value(by_key[(row, seq)]) if (row, seq) in by_key else "-" for seq in seqs) + " |")
    return lines


def _environment_line(env: dict[str, Any]) -> str:
    gpu = "; ".join(env.get("gpu") or []) or "no GPU"
    return (
        f"{gpu}; onnxruntime {env.get('onnxruntime')} ({', '.join(env.get('onnxruntime_providers') or [])}); "
        f"torch {env.get('torch')} (CUDA {env.get('torch_cuda') or 'none'}); Python {env.get('python')}; "
        f"{env.get('cpu_count')} CPUs; {env.get('started_at')}; commit {env.get('commit') or 'unknown'}"
    )


def render_markdown(data: dict[str, Any]) -> str:
    env, plan = data["environment"], data["plan"]
    took = sum(data.get("phases", {}).values())
    status = "passed" if data.get("passed") else ("failed" if data.get("finished") else "incomplete")
    lines = [
        f"# GPU check, {env.get('mode')} mode: {status}",
        "",
        _environment_line(env) + ".",
        f"TensorRT: {env.get('tensorrt_reason')}. Budget {plan.get('budget_s', 0):.0f} s, used {took:.0f} s"
        + " (" + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in data.get("phases", {}).items()) + ").",
        "",
        "## Checks",
        "",
        "| check | result | detail |",
        "|---|---|---|",
    ]
    for check in data["checks"]:
        detail = check["detail"].replace("|", "\\|")  # a bare pipe would end the cell
        lines.append(f"| {check['name']} | {'pass' if check['passed'] else '**FAIL**'} | {detail} |")
    lines += ["", "## Raw session: sequences/s (p50 ms per batch)", ""]
    for (model, variant, provider), cells in _groups(data["raw"]).items():
        lines += [f"### {model}, {variant} on {provider}", ""]
        lines += _grid_table(cells, "batch", "batch", lambda c: f"{_rate(c['sequences_per_s'])} ({_ms(c['p50_ms'])})")
        lines.append("")
    lines += ["## HTTP, one sequence per request: sequences/s (p50 / p99 ms, mean batch, client CPU)", ""]
    for (model, variant, provider), cells in _groups(data["http"]).items():
        lines += [f"### {model}, {variant} on {provider}", ""]
        lines += _grid_table(
            cells, "concurrency", "clients",
            lambda c: f"{_rate(c['sequences_per_s'])} ({_ms(c['p50_ms'])} / {_ms(c['p99_ms'])}, {c['mean_batch'] or 0:.0f}, "
            f"{c['client_cpu']:.0%})" + (f" {c['errors']} errors" if c["errors"] else ""),
        )
        lines.append("")
    lines += [
        "## Padding waste on mixed lengths (STS-B sentences)",
        "",
        "| model | variant | provider | path | batch | clients | order | padding waste | sequences/s | real tokens/s | p50 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in data["mixed"]:
        waste = "-" if c["padding_waste"] is None else f"{c['padding_waste']:.1%}"
        lines.append(
            f"| {c['model']} | {c['variant']} | {c['provider']} | {c['path']} | {c['batch']} | {c['concurrency'] or '-'} | "
            f"{c['order']} | {waste} | {_rate(c['sequences_per_s'])} | {_rate(c['real_tokens_per_s'])} | {_ms(c['p50_ms'])} |"
        )
    lines += ["", f"## Skipped ({len(data['skipped'])})", ""]
    lines += [f"- {s['what']}: {s['reason']}" for s in data["skipped"]] or ["Nothing: every cell ran."]
    return "\n".join(lines) + "\n"
