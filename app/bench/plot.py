"""The bench as a picture: sentences/s against concurrency beside the in-process figures, and request
latency percentiles (matplotlib, from the `bench` extra)."""

from __future__ import annotations

from pathlib import Path

from app.bench.report import EMBED, Section


def draw(sections: list[Section], out: Path) -> Path:
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("bench: drawing the PNG needs matplotlib: pip install -e '.[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    embed = next((section for section in sections if section.task == EMBED), sections[0])
    figure, (speed, latency) = plt.subplots(1, 2, figsize=(12, 4.8))
    for mode, label, style in (("http", "distilserve (HTTP)", "o-"), ("infinity", "Infinity (HTTP)", "s--")):
        rows = sorted(embed.http(mode), key=lambda row: row.concurrency)
        if not rows:
            continue
        concurrencies = [row.concurrency for row in rows]
        line = speed.plot(concurrencies, [row.throughput for row in rows], style, label=label)[0]
        latency.plot(concurrencies, [row.p50_ms for row in rows], style, color=line.get_color(), label=f"{label} p50")
        latency.plot(concurrencies, [row.p99_ms for row in rows], style, color=line.get_color(), alpha=0.5,
                     label=f"{label} p99")
        for row in embed.rows:
            if row.mode == mode and row.sentences_per_request > 1:
                speed.plot([row.concurrency], [row.throughput], "*", markersize=12, color=line.get_color(),
                           label=f"{label}, {row.sentences_per_request} sentences/request")
    references = [(embed.ceiling, "ceiling: in process, sorted by length, batches of 32", "-", "black")]
    references += [(row, label, ":", color) for row, label, color in (
        (next((r for r in embed.rows if r.mode == "raw" and r.concurrency > 1), None), "in process, arrival order", "grey"),
        (embed.first("sentence-transformers"), "sentence-transformers encode", "tab:green"),
    ) if row is not None]
    for row, label, style, color in references:
        speed.axhline(row.throughput, linestyle=style, color=color, linewidth=1.2, label=label)
    concurrencies = sorted({row.concurrency for row in embed.rows if row.mode in ("http", "infinity")})
    for axes in (speed, latency):
        axes.set_xscale("log", base=2)
        axes.set_xticks(concurrencies, [str(c) for c in concurrencies])
        axes.set_xlabel("concurrent clients (one sentence per request unless marked)")
        axes.grid(True, which="both", alpha=0.3)
    speed.set_ylabel("sentences / s")
    speed.set_ylim(bottom=0)
    ceiling = embed.ceiling.throughput
    ratio = speed.secondary_yaxis("right", functions=(lambda y: y / ceiling, lambda r: r * ceiling))
    ratio.set_ylabel("x the in-process ceiling")
    speed.set_title(f"{embed.model_id} ({embed.variant}): throughput")
    speed.legend(fontsize=8, loc="lower right")
    latency.set_yscale("log")
    latency.set_ylabel("request latency, ms")
    latency.set_title("latency percentiles")
    latency.legend(fontsize=8)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out
