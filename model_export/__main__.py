"""python -m model_export SOURCE --out DIR: export a DistilBERT/BERT checkpoint to a served model directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from model_export.cli_logging import add_verbose_flag, configure_logging
from model_export.variants import VARIANT_NAMES


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m model_export",
        description="Export a DistilBERT or BERT checkpoint (hub id or local directory) to a fused, "
        "validated ONNX model directory with a manifest.",
    )
    parser.add_argument("source", metavar="SOURCE", help="hub id (e.g. distilbert-base-uncased) or checkpoint directory")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="model directory to write (replaced atomically)")
    parser.add_argument("--variants", default=",".join(VARIANT_NAMES), help="comma-separated subset of fp32,fp16,int8 (default: all); the GPU variants fp32-unfused and fp16-packed on request")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    parser.add_argument("--max-length", type=int, default=None, help="max tokens per input (default: sentence_bert_config.json's max_seq_length, else the model's max_position_embeddings; at most 512)")
    parser.add_argument("--pooling", choices=("mean", "cls"), default="mean", help="sentence embedding pooling (default: mean)")
    parser.add_argument("--allow-unfused", action="store_true", help="write the model even if attention/layer norms did not fuse")
    parser.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    parser.add_argument("--model-id", default=None, help="name the server reports (default: hub id or directory name)")
    add_verbose_flag(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.verbose)
    from model_export.errors import ExportError
    from model_export.pipeline import ExportOptions, export_model

    options = ExportOptions(
        variants=tuple(name.strip() for name in args.variants.split(",") if name.strip()),
        opset=args.opset,
        max_length=args.max_length,
        pooling=args.pooling,
        allow_unfused=args.allow_unfused,
        revision=args.revision,
        model_id=args.model_id,
    )
    try:
        manifest = export_model(args.source, args.out, options)
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    print(render_summary(manifest, args.out))
    return 0


def render_summary(manifest, out: Path) -> str:  # noqa: ANN001 - a Manifest
    """The fused-op table and parity figures, as a markdown-ish table for humans and the README."""
    lines = [f"{manifest.model_id} -> {out}  (tasks: {', '.join(manifest.tasks)}, pooling {manifest.pooling}, max_length {manifest.max_length})"]
    ops = sorted({op for variant in manifest.variants.values() for op in variant.fused_ops})
    lines.append("")
    lines.append("| variant | " + " | ".join(ops) + " |")
    lines.append("|---" * (len(ops) + 1) + "|")
    for name, variant in manifest.variants.items():
        lines.append(f"| {name} | " + " | ".join(str(variant.fused_ops.get(op, 0)) for op in ops) + " |")
    lines.append("")
    # Only the columns a model has figures for: an encoder's logits columns would be all dashes. A
    # classifier has no embedding; its logits and argmax fill the logits and top-1 columns.
    judged = [v.parity for v in manifest.variants.values() if v.parity is not None]
    mlm = any(p.top1_agreement is not None for p in judged)
    logits = mlm or any(p.logits_max_abs_diff is not None for p in judged)
    columns = ["variant", "emb max abs diff", "emb min cosine"]
    columns += ["logits max abs diff", "top-1 (argmax) agree"] if logits else []
    columns += ["top-5 identical", "pipeline top-5 agree"] if mlm else []
    lines.append("| " + " | ".join([*columns, "gate"]) + " |")
    lines.append("|---" * (len(columns) + 1) + "|")
    for name, variant in manifest.variants.items():
        p = variant.parity
        if p is None:
            lines.append("| " + " | ".join([name, *["-"] * (len(columns) - 1), str(variant.gate_pending)]) + " |")
            continue
        figures = [_figure(p.embedding_max_abs_diff, ".2e"), _figure(p.embedding_min_cosine, ".6f")]
        if logits:
            figures += [
                _figure(p.mask_logits_max_abs_diff if p.logits_max_abs_diff is None else p.logits_max_abs_diff, ".2e"),
                _figure(p.top1_agreement if p.argmax_agreement is None else p.argmax_agreement, ".0%"),
            ]
        if mlm:
            figures += [_figure(p.top5_identical, ""), _figure(p.top_k_agreement_with_pipeline, ".0%")]
        lines.append(f"| {name} | " + " | ".join(figures) + f" | {p.gate} |")
    for note in manifest.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _figure(value: float | bool | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


if __name__ == "__main__":
    sys.exit(main())
