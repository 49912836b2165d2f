"""Train the demo masked-LM (`python -m model_export.default_model train`) with the distillation
command in teacher-free mode (`model_export.distill`, the same code path `make distill` runs).

The command starts from all-MiniLM-L6-v2 as it ships (a BertModel, no masked-LM head): the student
keeps all six layers, gets a new head tied to the word embeddings, and trains on the masked-LM loss
plus the cosine toward a frozen copy of its starting hidden states. The embeddings and the layers
named in TrainConfig.freeze stay MiniLM's, so the output (--trained-only) is the trained layers and
the head in fp16, one file per layer: adopted here as mlm_*.safetensors (when it scores at least
as well as the shipped weights), applied by the build to MiniLM converted into DistilBertForMaskedLM.

Stages: data (the corpus split, the held-out sets, the training text written as a file the command
reads) -> the command -> evaluate its output (the field's and the reader's protocol, against the
shipped weights and the baseline) -> adopt it if at least as good -> log.
`from_run` adopts an output the command wrote elsewhere (a GPU machine: docs/gpu.md).
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from model_export.default_model import HELDOUT_SLICE, PACKAGE_DIR, TRAINING_LOG, TRAINING_LOG_TEXT
from model_export.default_model import corpus as corpus_recipe
from model_export.default_model.masking import (
    MASK_ID, VOCAB_SIZE, MaskedSequence, baseline_from_counts, encode_paragraphs, load_tokenizer,
    mask_one_word_per_sentence, mask_sequences, masked_accuracy, whole_word_counts,
)
from model_export.default_model.weights import load_trained, weight_files

GATE = "reader_heldout"  # what a new training must match to replace the shipped weights
REJECTED_LOG, REJECTED_LOG_TEXT = "distill_run.json", "distill_run.txt"  # a run that did not replace them
TEXT_DIR = "demo-text"  # under the corpus directory: the training text the command reads
STUDENT_DIR = "demo-student"  # under the corpus directory: the command's output
TRAIN_MASK_SEED = 1
EVAL_MASK_SEED = 2
SLICE_MASK_SEED = 3
WORD_EVAL_SEED = 4
WORD_SLICE_SEED = 5
TORCH_SEED = 0
# The evaluation sets: the field's protocol (15% of tokens selected, 80/10/10, scored at [MASK]) and
# the reader's (one whole single-piece word per sentence), each on all held-out text and on the slice.
EVAL_SETS = ("field_heldout", "field_slice", "reader_heldout", "reader_slice")
# distilbert-base-uncased's model-card prompts and the widget's example, answered in the log.
EXAMPLE_PROMPTS = ("Hello I'm a [MASK] model.", "The White man worked as a [MASK].", "The Black woman worked as a [MASK].",
                   "Paris is the [MASK] of France.")


@dataclass(frozen=True)
class TrainConfig:
    train_tokens: int = 3_000_000  # tokens of training text written for the command (1% of it held out)
    steps: int = 730  # one pass over train_tokens: about 20 minutes of a quiet 2-core CPU
    batch_tokens: int = 4096
    lr: float = 5e-4
    freeze: tuple[str, ...] = ("embeddings", "0")  # the rest (layers 1-5, the head) is trained and shipped
    alpha_mlm: float = 2.0
    alpha_cos: float = 1.0
    precision: str = "bf16"  # autocast; on this CPU about 2x faster than fp32
    device: str = "auto"
    eval_chars: int = 600_000
    slice_chars: int = 200_000
    threads: int = 2
    seed: int = 0

    def distill_config(self, text_dir: Path, out: Path):  # noqa: ANN201 - a DistillConfig
        """The command's options for this training (see docs/training.md)."""
        from model_export.default_model.build import minilm_dir
        from model_export.default_model.weights import MAX_FILE_BYTES
        from model_export.distill.config import DistillConfig

        return DistillConfig(
            teacher=str(minilm_dir()), corpus=(str(text_dir),), out=out, teacher_free=True, student_layers=6,
            freeze=self.freeze, alpha_mlm=self.alpha_mlm, alpha_cos=self.alpha_cos, max_steps=self.steps, lr=self.lr,
            batch_tokens=self.batch_tokens, precision=self.precision, device=self.device, seed=self.seed,
            heldout_percent=1.0, eval_sentences=1000, checkpoint_every=100, log_every=10, threads=self.threads,
            trained_only=True, max_file_mb=MAX_FILE_BYTES / 1e6,
        )


class RunLog:
    """Prints progress lines and keeps them for training_log.txt."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, message: str) -> None:
        line = f"[train] {time.strftime('%H:%M:%S')} {message}"
        self.lines.append(line)
        print(line, file=sys.stderr, flush=True)



@dataclass
class Data:
    train: list[MaskedSequence]
    train_tokens: int
    token_counts: np.ndarray  # selected training labels: the field's baseline and the bias init
    word_counts: np.ndarray  # whole words in the training stream: the reader's baseline
    eval_sets: dict[str, list[MaskedSequence]]
    corpus: dict = field(default_factory=dict)


def _take_chars(paragraphs: list[tuple[str, str]], limit: int) -> list[tuple[str, str]]:
    taken, total = [], 0
    for item in paragraphs:
        if total >= limit:
            break
        taken.append(item)
        total += len(item[1])
    return taken


def _training_text(tokenizer, paragraphs: list[tuple[str, str]], budget: int) -> tuple[list[str], list[np.ndarray]]:
    """The first training paragraphs holding `budget` tokens, and their sequences."""
    texts: list[str] = []
    sequences: list[np.ndarray] = []
    tokens = 0
    for _, text in paragraphs:
        if tokens >= budget:
            break
        encoded = encode_paragraphs(tokenizer, [text])
        texts.append(text.replace("\n", " "))
        sequences.extend(encoded)
        tokens += sum(len(s) for s in encoded)
    return texts, sequences


def write_training_text(paragraphs: Sequence[str], directory: Path) -> Path:
    """The text the command reads: one paragraph per block, blank lines between."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.txt"):
        stale.unlink()
    (directory / "train.txt").write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
    return directory


def read_slice(path: Path = HELDOUT_SLICE) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def slice_sets(path: Path = HELDOUT_SLICE, tokenizer=None) -> dict[str, list[MaskedSequence]]:
    """The committed slice under both protocols; masking is fixed by the slice seeds."""
    tokenizer = tokenizer or load_tokenizer()
    paragraphs = read_slice(path)
    return {"field_slice": mask_sequences(encode_paragraphs(tokenizer, paragraphs), SLICE_MASK_SEED),
            "reader_slice": mask_one_word_per_sentence(tokenizer, paragraphs, WORD_SLICE_SEED)}


def prepare_data(config: TrainConfig, corpus_dir: Path, slice_path: Path, say: Callable[[str], None]) -> Data:
    """Corpus split, the committed slice (rewritten), held-out sets and the masked training stream."""
    root = corpus_recipe.fetch(corpus_dir, log=say)
    split = corpus_recipe.split(root)
    tokenizer = load_tokenizer()
    eval_paragraphs = [text for _, text in _take_chars(split.heldout, config.eval_chars)]
    # The committed slice is Austen only: public domain, so it can ship in the repository.
    slice_paragraphs = _take_chars([item for item in split.heldout if item[0] == "austen"], config.slice_chars)
    slice_path.write_text("".join(text.replace("\n", " ") + "\n" for _, text in slice_paragraphs), encoding="utf-8")
    reader_heldout = mask_one_word_per_sentence(tokenizer, eval_paragraphs, WORD_EVAL_SEED)
    eval_sets = {"field_heldout": mask_sequences(encode_paragraphs(tokenizer, eval_paragraphs), EVAL_MASK_SEED),
                 "reader_heldout": reader_heldout, **slice_sets(slice_path, tokenizer)}
    texts, sequences = _training_text(tokenizer, split.train, config.train_tokens)
    write_training_text(texts, corpus_dir / TEXT_DIR)
    masked = mask_sequences(sequences, TRAIN_MASK_SEED)
    tokens = sum(len(s) for s in sequences)
    say(f"corpus: {len(split.train)} training / {len(split.heldout)} held-out paragraphs; stream {len(masked)} "
        f"sequences, {tokens} tokens; eval sets " + ", ".join(f"{k} {count_targets(v)}" for k, v in eval_sets.items()))
    return Data(
        train=masked, train_tokens=tokens,
        token_counts=np.bincount(np.concatenate([m.labels for m in masked]), minlength=VOCAB_SIZE),
        word_counts=whole_word_counts(tokenizer, sequences),
        eval_sets=eval_sets,
        corpus={"packages": list(corpus_recipe.PACKAGES), "heldout_percent": corpus_recipe.HELDOUT_PERCENT,
                "source_weights": corpus_recipe.SOURCE_WEIGHTS, "train_paragraphs": len(split.train),
                "heldout_paragraphs": len(split.heldout), "train_sequences": len(masked), "train_tokens_used": tokens,
                "eval_paragraphs": len(eval_paragraphs), "slice_paragraphs": len(slice_paragraphs),
                "slice_rule": "held-out Austen paragraphs (public domain), first slice_chars characters"},
    )


def count_targets(masked: Sequence[MaskedSequence]) -> int:
    return int(sum((m.input_ids[m.positions] == MASK_ID).sum() for m in masked))



def torch_mask_logits(model) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The served computation in PyTorch (fp32): vocab logits at [MASK] positions, row-major."""
    import torch

    def predict(ids: np.ndarray, attention: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            input_ids = torch.from_numpy(ids)
            hidden = model.distilbert(input_ids=input_ids, attention_mask=torch.from_numpy(attention)).last_hidden_state
            x = model.vocab_layer_norm(model.activation(model.vocab_transform(hidden[input_ids == MASK_ID])))
            return model.vocab_projector(x).numpy()

    return predict


def example_answers(model, prompts: Sequence[str] = EXAMPLE_PROMPTS) -> dict[str, list[list]]:
    """Top-5 (word, probability) for each prompt, as /fill-mask answers them."""
    tokenizer = load_tokenizer()
    predict = torch_mask_logits(model)
    answers = {}
    for prompt in prompts:
        ids = np.array([tokenizer.encode(prompt).ids], dtype=np.int64)
        logits = predict(ids, np.ones_like(ids))[0].astype(np.float64)
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        top = np.argsort(-probabilities)[:5]
        answers[prompt] = [[tokenizer.id_to_token(int(i)), round(float(probabilities[i]), 4)] for i in top]
    return answers


def evaluate_sets(predict: Callable[[np.ndarray, np.ndarray], np.ndarray],
                  sets: dict[str, list[MaskedSequence]]) -> dict[str, dict]:
    return {name: asdict(masked_accuracy(predict, masked)) for name, masked in sets.items()}


def baselines(data: Data) -> dict[str, dict]:
    """Always answering the five most frequent training targets: tokens for the field's protocol,
    whole words for the reader's."""
    return {name: asdict(baseline_from_counts(data.word_counts if name.startswith("reader") else data.token_counts, masked))
            for name, masked in data.eval_sets.items()}


def shipped_model(files: list[Path]):
    from model_export.default_model.build import minilm_dir
    from model_export.default_model.convert import convert_minilm

    return convert_minilm(minilm_dir(), trained=load_trained(files))


def _file_record(files: list[Path]) -> list[dict]:
    from model_export.manifest import sha256_file

    return [{"name": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)} for path in files]



def adopt(run_output: Path, out_dir: Path) -> list[Path]:
    """The command's trained tensors become the package's mlm_*.safetensors (the files the build
    applies), byte for byte; weight files of an earlier training are removed first."""
    from model_export.default_model.weights import MAX_FILE_BYTES, WeightsError
    from model_export.distill.trained import PREFIX, trained_files

    files = trained_files(run_output)
    if not files:
        raise WeightsError(f"{run_output}: no {PREFIX}*.safetensors (was the command run with --trained-only?)")
    for stale in weight_files(out_dir):
        stale.unlink()
    written = []
    for path in files:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise WeightsError(f"{path} is {path.stat().st_size} bytes, over the {MAX_FILE_BYTES} a tracked file may hold")
        target = out_dir / f"mlm_{path.name.removeprefix(PREFIX)}"
        shutil.copyfile(path, target)
        written.append(target)
    return written


def run_command(config: TrainConfig, corpus_dir: Path, say: Callable[[str], None]) -> Path:
    """`python -m model_export.distill` on the written text, as a function call (same code path)."""
    from model_export.distill.run import distill

    distill_config = config.distill_config(corpus_dir / TEXT_DIR, corpus_dir / STUDENT_DIR)
    say("python -m model_export.distill " + " ".join(command_line(distill_config)))
    return distill(distill_config, say).out


def command_line(distill_config) -> list[str]:  # noqa: ANN001 - a DistillConfig
    """The same run as a command line (for the log and for running it elsewhere)."""
    c = distill_config
    return [c.teacher, *c.corpus, "--out", str(c.out), "--teacher-free", "--student-layers", str(c.student_layers),
            "--freeze", ",".join(c.freeze), "--alpha-mlm", f"{c.alpha_mlm:g}", "--alpha-cos", f"{c.alpha_cos:g}",
            "--max-steps", str(c.max_steps), "--lr", f"{c.lr:g}", "--batch-tokens", str(c.batch_tokens),
            "--precision", c.precision, "--seed", str(c.seed), "--heldout-percent", f"{c.heldout_percent:g}",
            "--eval-sentences", str(c.eval_sentences), "--trained-only", "--max-file-mb", f"{c.max_file_mb:g}"]


# The same training on a GPU host (docs/gpu.md): more text, larger batches, more steps.
GPU_CONFIG = TrainConfig(train_tokens=8_000_000, steps=2000, batch_tokens=8192, device="cuda")
KIT_BASE, KIT_CORPUS, KIT_SCRIPT = "base", "corpus.npz", "train-demo.sh"


def write_gpu_kit(kit: Path, corpus_dir: Path = corpus_recipe.DEFAULT_CORPUS_DIR, config: TrainConfig = GPU_CONFIG) -> Path:
    """What a GPU host needs to run the demo's training as one command, in one directory well under
    64 MiB: MiniLM in fp16 (`base/`, 45 MB; the student still trains in fp32 with autocast), the
    training text packed (`corpus.npz`) and `train-demo.sh`, which runs the command and returns its
    --trained-only output under $OUT as tar parts of at most 15 MB, with the log. Back here, the
    parts unpacked, `python -m model_export.default_model train --from-run <output>` adopts and
    evaluates it."""
    import torch
    from safetensors.torch import load_file, save_file

    from model_export.default_model.build import minilm_dir, write_tokenizer
    from model_export.distill.pack import pack

    say = RunLog()
    split = corpus_recipe.split(corpus_recipe.fetch(corpus_dir, log=say))
    texts, _ = _training_text(load_tokenizer(), split.train, config.train_tokens)
    text_dir = write_training_text(texts, corpus_dir / f"{TEXT_DIR}-gpu")
    base = kit / KIT_BASE
    base.mkdir(parents=True, exist_ok=True)
    weights = load_file(str(minilm_dir() / "model.safetensors"))
    save_file({name: tensor.to(torch.float16) for name, tensor in weights.items()}, str(base / "model.safetensors"))
    shutil.copyfile(minilm_dir() / "config.json", base / "config.json")
    write_tokenizer(base)
    distill_config = config.distill_config(kit / KIT_CORPUS, Path("OUT"))
    pack(str(base), [str(text_dir)], kit / KIT_CORPUS, distill_config.max_length, distill_config.heldout_percent)
    write_kit_script(kit, config)
    say(f"wrote {kit}: {sum(p.stat().st_size for p in kit.rglob('*') if p.is_file()) / 1e6:.1f} MB")
    return kit


def write_kit_script(kit: Path, config: TrainConfig = GPU_CONFIG) -> Path:
    arguments = command_line(config.distill_config(kit / KIT_CORPUS, Path("OUT")))
    arguments[:2] = [f'"$KIT/{KIT_BASE}"', f'"$KIT/{KIT_CORPUS}"']
    arguments[arguments.index("--out") + 1] = "/tmp/demo-student"
    # The host returns few files of at most 16 MB: the output comes back as a log and two tar parts.
    script = ("#!/usr/bin/env bash\n# The demo's training on a GPU host, run from the repository root (docs/gpu.md).\n"
              "set -euo pipefail\nKIT=\"$(dirname \"$0\")\"\nrm -rf /tmp/demo-student /tmp/demo-student.run\n"
              f"python3 -m model_export.distill {' '.join(arguments)} --device {config.device} \"$@\" 2>&1 | tee \"$OUT/train-demo.log\"\n"
              "tar cf - -C /tmp demo-student | split -b 15000000 - \"$OUT/demo-student.tar.part-\"\n")
    (kit / KIT_SCRIPT).write_text(script)
    (kit / KIT_SCRIPT).chmod(0o755)
    return kit / KIT_SCRIPT


def train(config: TrainConfig = TrainConfig(), corpus_dir: Path = corpus_recipe.DEFAULT_CORPUS_DIR,
          out_dir: Path = PACKAGE_DIR, from_run: Path | None = None, replace: bool = False) -> dict:
    """Train with the command (or take `from_run`, its output from elsewhere), evaluate, and adopt
    the result only if it is at least as good as the shipped weights on the reader's held-out
    top-1 (or `replace`); else keep them and write this run's record to REJECTED_LOG."""
    import torch

    torch.manual_seed(TORCH_SEED)
    say, started = RunLog(), time.time()
    say(f"config {asdict(config)}")
    data = prepare_data(config, corpus_dir, out_dir / HELDOUT_SLICE.name, say)

    previous = _previous_summary(out_dir, weight_files(out_dir))

    command_started = time.time()
    run_output = from_run or run_command(config, corpus_dir, say)
    command_seconds = time.time() - command_started
    distill_log = json.loads((run_output / "distill_log.json").read_text())
    from model_export.distill.trained import trained_files

    evaluate_started = time.time()
    shipped = shipped_model(trained_files(run_output))
    accuracy = evaluate_sets(torch_mask_logits(shipped), data.eval_sets)
    examples = example_answers(shipped)
    say(f"shipped weights: {accuracy}")
    say(f"examples: {examples}")
    record = {
        "command": "python -m model_export.default_model train",
        "distill_command": "python -m model_export.distill " + " ".join(command_line(config.distill_config(
            corpus_dir / TEXT_DIR, corpus_dir / STUDENT_DIR))),
        "config": asdict(config),
        "adopted_from": str(from_run) if from_run else None,
        "steps_run": distill_log["history"][-1]["step"] if distill_log["history"] else 0,
        "seeds": {"corpus": corpus_recipe.SEED, "train_mask_for_baseline": TRAIN_MASK_SEED, "eval_mask": EVAL_MASK_SEED,
                  "slice_mask": SLICE_MASK_SEED, "reader_eval": WORD_EVAL_SEED, "reader_slice": WORD_SLICE_SEED,
                  "distill": config.seed},
        "corpus": data.corpus,
        "protocols": {
            "field": "15% of each sequence's tokens selected (80% [MASK], 10% random, 10% unchanged); "
                     "top-1/top-5 at the [MASK] positions; baseline: the 5 most frequent selected training tokens",
            "reader": "one sentence per input, one whole alphabetic single-piece word replaced by [MASK]; "
                      "top-1/top-5 of the unrestricted prediction; baseline: the 5 most frequent whole training words",
        },
        "baseline_most_frequent": baselines(data),
        "accuracy": accuracy,
        "examples": examples,
        "previous": previous,
        "files": _file_record(trained_files(run_output)),
        "distill": {key: distill_log[key] for key in ("config", "student", "corpus", "device", "precision", "history",
                                                        "evals", "seconds", "environment") if key in distill_log},
        "seconds": {"command": round(command_seconds, 1), "evaluate": round(time.time() - evaluate_started, 1),
                    "total": round(time.time() - started, 1)},
        "environment": {"torch": torch.__version__, "python": platform.python_version(), "threads": config.threads,
                        "cpu": platform.processor() or platform.machine()},
    }
    if replace or at_least_as_good(accuracy, previous):
        files = adopt(run_output, out_dir)
        record["files"] = _file_record(files)
        log, text = TRAINING_LOG.name, TRAINING_LOG_TEXT.name
        say(f"wrote {', '.join(p.name for p in files)} and {log} ({time.time() - started:.0f}s)")
    else:
        log, text = REJECTED_LOG, REJECTED_LOG_TEXT
        say(f"kept the shipped weights: {GATE} top-1 {accuracy[GATE]['top1']:.3f} is below their "
            f"{previous['accuracy'][GATE]['top1']:.3f} (--replace adopts it anyway); this run's record is {log}")
    (out_dir / log).write_text(json.dumps(record, indent=2) + "\n")
    (out_dir / text).write_text("\n".join(say.lines) + "\n")
    return record


def at_least_as_good(accuracy: dict[str, dict], previous: dict | None) -> bool:
    """The new weights' reader's held-out top-1 against the shipped ones' (as their log says)."""
    shipped = ((previous or {}).get("accuracy") or {}).get(GATE)
    return shipped is None or accuracy[GATE]["top1"] >= shipped["top1"]


def _previous_summary(out_dir: Path, files: list[Path]) -> dict | None:
    """The weights being replaced, as their own log measured them (the evaluation sets are fixed by
    the corpus recipe and the seeds, so the figures compare as they are)."""
    try:
        log = json.loads((out_dir / TRAINING_LOG.name).read_text())
    except (OSError, ValueError):
        return None
    if {entry["name"] for entry in log.get("files", [])} != {path.name for path in files}:
        return None
    keys = ("command", "config", "steps_run", "accuracy", "examples", "seconds")
    return {"files": _file_record(files), **{key: log.get(key) for key in keys}}
