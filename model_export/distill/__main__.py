"""python -m model_export.distill TEACHER CORPUS... --out DIR: distil a DistilBertForMaskedLM student."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from model_export.distill.config import CE_POSITIONS, DEVICES, PRECISIONS, DistillConfig

DEFAULTS = DistillConfig(teacher="", corpus=(), out=Path())


def _layers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer indices, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m model_export.distill",
        description="Distil a BERT or DistilBERT masked-LM teacher into a DistilBertForMaskedLM student on your text "
        "(soft targets + masked LM + cosine, as DistilBERT was trained). The output directory is a checkpoint that "
        "`python -m model_export OUT --out EXPORT` exports as it is.",
        argument_default=argparse.SUPPRESS,
    )
    d = DEFAULTS
    parser.add_argument("teacher", help="hub id or checkpoint directory of a BertForMaskedLM or DistilBertForMaskedLM")
    parser.add_argument("corpus", nargs="+", help="text files, or directories of *.txt/*.text/*.md files")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="checkpoint directory to write (replaced atomically at the end)")
    model = parser.add_argument_group("student")
    model.add_argument("--student-layers", type=int, help="layers of the student (default: half the teacher's)")
    model.add_argument("--init-layers", type=_layers, metavar="I,J,...", help="teacher layers the student starts from (default: every other one from 0)")
    model.add_argument("--freeze", type=_names, metavar="PARTS", help="comma-separated parts kept frozen: embeddings, head, student layer indices")
    model.add_argument("--teacher-free", action="store_true", help="no teacher distribution: masked LM and cosine toward a frozen copy of the starting weights")
    losses = parser.add_argument_group("losses")
    losses.add_argument("--temperature", type=float, help=f"soft-target temperature (default: {d.temperature})")
    losses.add_argument("--alpha-ce", type=float, help=f"weight of the soft-target loss (default: {d.alpha_ce})")
    losses.add_argument("--alpha-mlm", type=float, help=f"weight of the masked-LM loss (default: {d.alpha_mlm})")
    losses.add_argument("--alpha-cos", type=float, help=f"weight of the hidden-state cosine loss (default: {d.alpha_cos})")
    losses.add_argument("--ce-positions", choices=CE_POSITIONS, help="soft targets at every token (default, as the original) or only the masked ones (cheaper)")
    losses.add_argument("--mask-rate", type=float, help=f"fraction of tokens selected for the masked LM (default: {d.mask_rate})")
    schedule = parser.add_argument_group("schedule")
    schedule.add_argument("--max-steps", type=int, help=f"optimizer steps (default: {d.max_steps})")
    schedule.add_argument("--lr", type=float, help=f"peak AdamW learning rate (default: {d.lr})")
    schedule.add_argument("--warmup", type=float, help=f"linear warm-up, as a fraction of the steps (default: {d.warmup})")
    schedule.add_argument("--weight-decay", type=float, help=f"(default: {d.weight_decay})")
    schedule.add_argument("--max-grad-norm", type=float, help=f"gradient clipping (default: {d.max_grad_norm})")
    schedule.add_argument("--batch-tokens", type=int, help=f"padded tokens per batch; sequences are grouped by length (default: {d.batch_tokens})")
    schedule.add_argument("--accumulate", type=int, help=f"batches per optimizer step (default: {d.accumulate})")
    schedule.add_argument("--max-length", type=int, help=f"tokens per training sequence (default: {d.max_length})")
    schedule.add_argument("--seed", type=int, help=f"(default: {d.seed})")
    run = parser.add_argument_group("run")
    run.add_argument("--heldout-percent", type=float, help=f"paragraphs held out for evaluation, by hash (default: {d.heldout_percent})")
    run.add_argument("--eval-every", type=int, help="evaluate every N steps (default: only before and after)")
    run.add_argument("--eval-sentences", type=int, help=f"held-out sentences evaluated at most (default: {d.eval_sentences})")
    run.add_argument("--checkpoint-every", type=int, help=f"steps between checkpoints (default: {d.checkpoint_every})")
    run.add_argument("--log-every", type=int, help=f"steps between progress lines and log records (default: {d.log_every})")
    run.add_argument("--run-dir", type=Path, metavar="DIR", help="checkpoints and the running log (default: OUT.run beside OUT)")
    run.add_argument("--keep-run-dir", action="store_true", help="keep the run directory after the output is written")
    run.add_argument("--trained-only", action="store_true", help="write only the trained tensors (fp16, one file per layer) "
                     "and the checkpoint they apply to, instead of the whole student")
    run.add_argument("--max-file-mb", type=float, help=f"--trained-only: the largest file written, in MB (default: {d.max_file_mb:g})")
    run.add_argument("--resume", action="store_true", help="continue the run from its latest checkpoint (options default to the run's)")
    run.add_argument("--precision", choices=PRECISIONS, help="auto: bf16 (else fp16) autocast on CUDA, fp32 on CPU")
    run.add_argument("--device", choices=DEVICES, help="(default: auto, CUDA when present)")
    run.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    return parser


def make_config(given: dict[str, Any]) -> DistillConfig:
    """Defaults, overlaid on --resume by the run's saved options, overlaid by the options given."""
    given["corpus"] = tuple(given["corpus"])
    values: dict[str, Any] = {}
    if given.get("resume"):
        out = given["out"]
        run_dir = given.get("run_dir") or out.with_name(f"{out.name}.run")
        saved_path = run_dir / "config.json"
        if saved_path.is_file():
            saved = json.loads(saved_path.read_text())
            types = {field.name: field for field in dataclasses.fields(DistillConfig)}
            values = {name: _typed(name, value) for name, value in saved.items() if name in types}
    values.update(given)
    return DistillConfig(**values)


def _typed(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in ("corpus", "init_layers", "freeze"):
        return tuple(value)
    if name in ("out", "run_dir"):
        return Path(value)
    return value


def main(argv: list[str] | None = None) -> int:
    given = vars(build_parser().parse_args(argv))
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import transformers

    from model_export.distill.run import distill, render
    from model_export.errors import ExportError

    transformers.utils.logging.disable_progress_bar()

    try:
        result = distill(make_config(given))
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; continue the run with the same command and --resume", file=sys.stderr)
        return 130
    summary = result.eval
    print(f"{result.out}: student {render(summary['student'])}")
    if summary["teacher"] is not None:
        print(f"  teacher {render(summary['teacher'])}")
    print(f"  most-frequent-words baseline {render(summary['baseline_most_frequent'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
