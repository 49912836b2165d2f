"""The run, stage by stage: prepare (every input checked, nothing written) -> start or resume ->
train with checkpoints -> evaluate -> write the output directory atomically.

The run directory (<out>.run unless --run-dir) holds config.json, checkpoint.pt (the latest) and
log.jsonl while training; it is removed after the output is written unless --keep-run-dir.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model_export.distill.config import DistillConfig
from model_export.distill.data import BatchStream, Corpus, load_corpus
from model_export.distill.evaluate import Accuracy, EvalSet, accuracy, baseline, build_eval_set, top5_predictions, word_counts
from model_export.distill.loop import Distiller, Precision, choose_precision
from model_export.default_model.convert import HEAD_PARAMETERS
from model_export.distill.student import choose_layers, freeze, init_student
from model_export.distill.trained import check_sizes, save_trained, trained_tensors, write_base
from model_export.distill.teacher import Teacher, load_teacher
from model_export.errors import EmptyCorpusError, InvalidOptionError, OutputDirectoryError
from model_export.graph import mlm_head
from model_export.staging import check_output_dir, check_writable, make_staging_dir, move_into_place

EVAL_FILE = "distill_eval.json"
LOG_FILE = "distill_log.json"
CHECKPOINT_FILE = "checkpoint.pt"
RUN_CONFIG_FILE = "config.json"
OUTPUT_KIND = "distilled checkpoint directory"
Say = Callable[[str], None]


def stderr_say(message: str) -> None:
    print(f"[distill] {message}", file=sys.stderr, flush=True)


@dataclass
class Prepared:
    """Everything read and checked before anything is written (then the run directory is made)."""

    config: DistillConfig
    teacher: Teacher
    layers: tuple[int, ...]
    corpus: Corpus
    eval_set: EvalSet
    word_counts: np.ndarray
    token_counts: np.ndarray  # every training token: a new head's bias starts at their log frequency
    precision: Precision
    created_run_dir: bool = False  # removed again when the run cannot start
    teacher_top5: np.ndarray | None = field(default=None, repr=False)


def prepare(config: DistillConfig, say: Say = stderr_say) -> Prepared:
    config.check()
    check_output_dir(config.out, EVAL_FILE, OUTPUT_KIND)
    check_run_dir(config)
    say(f"loading teacher {config.teacher}")
    teacher = load_teacher(config.teacher, need_mlm_head=not config.teacher_free)
    layers = choose_layers(teacher.num_layers, config.student_layers, config.init_layers)
    max_length = min(config.max_length, int(teacher.checkpoint.config.max_position_embeddings))
    corpus = load_corpus(config.corpus, teacher.tokenizer, teacher.vocabulary, max_length, config.heldout_percent)
    eval_set = build_eval_set(teacher.tokenizer, corpus.heldout, teacher.vocabulary, max_length, config.eval_sentences)
    if len(eval_set.labels) == 0:
        raise EmptyCorpusError(f"{', '.join(config.corpus)}: the held-out text has no sentence with a whole word to mask")
    tokens = sum(len(s) for s in corpus.train)
    say(f"teacher: {teacher.checkpoint.architecture}, {teacher.num_layers} layers; student starts from layers {list(layers)}")
    say(f"corpus: {corpus.files} files, {len(corpus.train)} training sequences ({tokens} tokens), "
        f"{len(eval_set.labels)} held-out sentences")
    precision = choose_precision(config.device, config.precision)
    created = not config.run_path.exists()
    config.run_path.mkdir(parents=True, exist_ok=True)
    token_counts = np.bincount(np.concatenate(corpus.train), minlength=teacher.vocabulary.size)
    return Prepared(config, teacher, layers, corpus, eval_set, word_counts(corpus.train, teacher.vocabulary), token_counts,
                    precision, created)


def check_run_dir(config: DistillConfig) -> None:
    run, checkpoint = config.run_path, config.run_path / CHECKPOINT_FILE
    if config.resume and not checkpoint.is_file():
        raise InvalidOptionError(f"--resume: no checkpoint at {checkpoint}")
    if not config.resume and checkpoint.is_file():
        raise OutputDirectoryError(f"{run} holds a checkpoint of an earlier run: pass --resume to continue it, or delete it")
    check_writable(run)


def build_distiller(prepared: Prepared, say: Say = stderr_say) -> Distiller:
    """The student initialised from the teacher, or the run resumed from its checkpoint."""
    config, teacher = prepared.config, prepared.teacher
    torch.manual_seed(config.seed)
    student = init_student(teacher.model, prepared.layers, prepared.token_counts)
    if not teacher.checkpoint.has_mlm_head:
        say(f"{teacher.checkpoint.architecture} has no masked-LM head: a new one, tied to the word embeddings")
    frozen = freeze(student, config.freeze)
    if frozen:
        say(f"frozen: {len(frozen)} parameter tensors ({', '.join(config.freeze)})")
    if config.trained_only:
        check_sizes(trained_tensors(student, new_parameters(prepared)), max_file_bytes(config))
    target = teacher.model
    if config.teacher_free:
        target = copy.deepcopy(student).requires_grad_(False)
        say("teacher-free: masked-LM and cosine toward a frozen copy of the starting weights")
    stream = BatchStream(prepared.corpus.train, config.batch_tokens, teacher.vocabulary.pad_id, config.seed)
    distiller = Distiller(config, student, target, stream, teacher.vocabulary, prepared.precision)
    run_config = {"run": config.run_defining(), "teacher_sha256": teacher.weights_sha256}
    if config.resume:
        state = torch.load(config.run_path / CHECKPOINT_FILE, weights_only=False)
        check_same_run(state["run_config"], run_config)
        distiller.load_state_dict(state)
        say(f"resumed at step {distiller.step} (epoch {distiller.stream.epoch})")
    else:
        (config.run_path / RUN_CONFIG_FILE).write_text(json.dumps(config.to_json(), indent=2) + "\n")
        (config.run_path / "log.jsonl").unlink(missing_ok=True)
    distiller.run_config = run_config
    return distiller


def check_same_run(saved: dict[str, Any], current: dict[str, Any]) -> None:
    if saved["teacher_sha256"] != current["teacher_sha256"]:
        raise InvalidOptionError("--resume: the teacher's weights differ from the ones this run started with")
    for name, value in current["run"].items():
        if saved["run"].get(name) != value:
            raise InvalidOptionError(f"--resume: {name} is {value!r} but the run was started with {saved['run'].get(name)!r}")


def save_checkpoint(distiller: Distiller, run_dir: Path) -> None:
    state = {**distiller.state_dict(), "run_config": distiller.run_config}
    partial = run_dir / f"{CHECKPOINT_FILE}.partial"
    torch.save(state, partial)
    os.replace(partial, run_dir / CHECKPOINT_FILE)


def evaluate(distiller: Distiller, prepared: Prepared) -> Accuracy:
    device, budget = prepared.precision.device, prepared.config.batch_tokens
    vocabulary = prepared.teacher.vocabulary
    if prepared.teacher_top5 is None and not prepared.config.teacher_free:
        teacher = prepared.teacher.model.to(device)
        prepared.teacher_top5 = top5_predictions(teacher, mlm_head(teacher), prepared.eval_set, vocabulary, device, budget)
    top5 = top5_predictions(distiller.student, distiller.student_head, prepared.eval_set, vocabulary, device, budget)
    return accuracy(top5, prepared.eval_set, prepared.teacher_top5)


def train(distiller: Distiller, prepared: Prepared, until: int, say: Say = stderr_say) -> None:
    """Steps until `until`, logging, evaluating and checkpointing on the configured intervals."""
    config = prepared.config
    if distiller.step == 0 and not distiller.evals:
        distiller.evals.append({"step": 0, **evaluate(distiller, prepared).as_dict()})
        say(f"held-out at start: {render(distiller.evals[-1])}")
    started, first = time.perf_counter(), distiller.step
    while distiller.step < until:
        distiller.train_step()
        step = distiller.step
        if step % config.log_every == 0 or step == until:
            record = distiller.log_record()
            with (config.run_path / "log.jsonl").open("a") as log:
                log.write(json.dumps(record) + "\n")
            say(progress_line(record, config.max_steps, (time.perf_counter() - started) / (step - first)))
        if config.eval_every and step % config.eval_every == 0 and step < config.max_steps:
            distiller.evals.append({"step": step, **evaluate(distiller, prepared).as_dict()})
            say(f"held-out at step {step}: {render(distiller.evals[-1])}")
        if step % config.checkpoint_every == 0 or step == config.max_steps:
            save_checkpoint(distiller, config.run_path)


def progress_line(record: dict[str, float], max_steps: int, seconds_per_step: float) -> str:
    done = record["step"] / max_steps
    bar = "#" * int(20 * done) + "." * (20 - int(20 * done))
    terms = " ".join(f"{name} {record[name]:.4f}" for name in ("ce", "mlm", "cos") if name in record)
    eta = seconds_per_step * (max_steps - record["step"])
    return (f"[{bar}] step {record['step']}/{max_steps} loss {record['loss']:.4f} ({terms}) lr {record['lr']:.2e} "
            f"{record['tokens_per_s']:.0f} tokens/s eta {eta / 60:.1f} min")


def render(result: dict[str, Any]) -> str:
    text = f"top-1 {result['top1']:.3f} top-5 {result['top5']:.3f} ({result['items']} sentences)"
    return text + (f", top-1 agreement with the teacher {result['agreement']:.3f}" if result.get("agreement") is not None else "")


@dataclass(frozen=True)
class Result:
    out: Path
    eval: dict[str, Any]
    log: dict[str, Any]


def distill(config: DistillConfig, say: Say = stderr_say) -> Result:
    """The whole command: returns what was written into config.out."""
    if config.threads:
        torch.set_num_threads(config.threads)
    started = time.perf_counter()
    prepared = prepare(config, say)
    try:
        distiller = build_distiller(prepared, say)
    except InvalidOptionError:
        if prepared.created_run_dir:  # a refused option (--freeze, --trained-only sizes) leaves nothing behind
            shutil.rmtree(config.run_path, ignore_errors=True)
        raise
    train(distiller, prepared, config.max_steps, say)
    final = evaluate(distiller, prepared)
    distiller.evals.append({"step": distiller.step, **final.as_dict()})
    say(f"held-out after {distiller.step} steps: {render(final.as_dict())}")
    result = write_output(distiller, prepared, final, time.perf_counter() - started)
    if not config.keep_run_dir:
        shutil.rmtree(config.run_path, ignore_errors=True)
    say(f"wrote {config.out}")
    return result


def eval_summary(distiller: Distiller, prepared: Prepared, final: Accuracy) -> dict[str, Any]:
    teacher = prepared.teacher_top5
    return {
        "student": final.as_dict(),
        "student_at_start": distiller.evals[0],
        "teacher": None if teacher is None else accuracy(teacher, prepared.eval_set).as_dict(),
        "baseline_most_frequent": baseline(prepared.word_counts, prepared.eval_set).as_dict(),
        "steps": distiller.step,
        "method": "one whole alphabetic single-wordpiece word masked per held-out sentence; top-1/top-5 of the "
                  "vocabulary; agreement = student top-1 equals teacher top-1",
    }


def run_log(distiller: Distiller, prepared: Prepared, seconds: float) -> dict[str, Any]:
    config, corpus = prepared.config, prepared.corpus
    student = distiller.student
    return {
        "command": "python -m model_export.distill",
        "config": config.to_json(),
        "teacher": {"source": config.teacher, "architecture": prepared.teacher.checkpoint.architecture,
                    "layers": prepared.teacher.num_layers, "weights_sha256": prepared.teacher.weights_sha256},
        "student": {"init_layers": list(prepared.layers), "parameters": sum(p.numel() for p in student.parameters()),
                    "trainable": sum(p.numel() for p in student.parameters() if p.requires_grad)},
        "corpus": {"files": corpus.files, "train_sequences": len(corpus.train), "train_tokens": int(sum(len(s) for s in corpus.train)),
                   "heldout_paragraphs": len(corpus.heldout), "eval_sentences": len(prepared.eval_set.labels)},
        "device": str(prepared.precision.device), "precision": prepared.precision.name,
        "history": distiller.history, "evals": distiller.evals, "seconds": round(seconds, 1),
        "environment": {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
                        "cpu": platform.processor() or platform.machine()},
    }


def new_parameters(prepared: Prepared) -> tuple[str, ...]:
    return () if prepared.teacher.checkpoint.has_mlm_head else HEAD_PARAMETERS


def max_file_bytes(config: DistillConfig) -> int:
    return int(config.max_file_mb * 1_000_000)


def write_trained_only(student: Any, prepared: Prepared, staging: Path) -> None:
    """The trained tensors and the student's config; trained_base.json says what they apply to."""
    config = prepared.config
    tensors = trained_tensors(student, new_parameters(prepared))
    files = save_trained(tensors, staging, max_file_bytes(config), {"format": "pt", "base": config.teacher})
    student.config.save_pretrained(staging)
    write_base(staging, {
        "base": config.teacher, "base_architecture": prepared.teacher.checkpoint.architecture,
        "base_weights_sha256": prepared.teacher.weights_sha256, "init_layers": list(prepared.layers),
        "files": [path.name for path in files], "tensors": len(tensors),
        "parameters": sum(tensor.numel() for tensor in tensors.values()),
        "how": "DistilBertForMaskedLM from the base (its layers init_layers, BERT renamed as model_export.distill.student "
               "does), then each tensor replaces the parameter of its name",
    })


def write_output(distiller: Distiller, prepared: Prepared, final: Accuracy, seconds: float) -> Result:
    """The student and its tokenizer as a checkpoint directory, with the evaluation and the log."""
    out = prepared.config.out.expanduser().absolute()
    staging = make_staging_dir(out, EVAL_FILE, OUTPUT_KIND)
    try:
        student = distiller.student.to("cpu").eval()
        if prepared.config.trained_only:
            write_trained_only(student, prepared, staging)
        else:
            student.save_pretrained(staging)
        prepared.teacher.tokenizer.save_pretrained(staging)
        summary, log = eval_summary(distiller, prepared, final), run_log(distiller, prepared, seconds)
        (staging / EVAL_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        (staging / LOG_FILE).write_text(json.dumps(log, indent=2) + "\n")
        move_into_place(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Result(out, summary, log)
