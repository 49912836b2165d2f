"""What one distillation run is: the options, their defaults, and which of them define the run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from model_export.errors import InvalidOptionError

CE_POSITIONS = ("all", "masked")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
# Changing one of these changes the run's arithmetic, so --resume refuses a different value.
RUN_DEFINING = (
    "teacher", "corpus", "student_layers", "init_layers", "temperature", "alpha_ce", "alpha_mlm", "alpha_cos",
    "ce_positions", "teacher_free", "freeze", "max_steps", "lr", "warmup", "weight_decay", "max_grad_norm",
    "batch_tokens", "accumulate", "max_length", "mask_rate", "heldout_percent", "precision", "seed",
)


@dataclass(frozen=True)
class DistillConfig:
    teacher: str  # hub id or checkpoint directory of a BERT/DistilBERT masked-LM
    corpus: tuple[str, ...]  # text files and directories of them
    out: Path
    run_dir: Path | None = None  # checkpoints and the running log; None: <out>.run beside the output
    student_layers: int | None = None  # None: half the teacher's (at least 1)
    init_layers: tuple[int, ...] | None = None  # teacher layers the student starts from; None: every other one
    temperature: float = 2.0
    alpha_ce: float = 5.0
    alpha_mlm: float = 2.0
    alpha_cos: float = 1.0
    ce_positions: str = "all"  # soft targets at every token (the original) or only at the masked ones
    teacher_free: bool = False
    freeze: tuple[str, ...] = ()  # "embeddings", "head", or student layer indices
    max_steps: int = 1000
    lr: float = 1e-4
    warmup: float = 0.05  # fraction of max_steps
    weight_decay: float = 0.0
    max_grad_norm: float = 5.0
    batch_tokens: int = 4096  # padded tokens per batch
    accumulate: int = 1  # batches per optimizer step
    max_length: int = 128
    mask_rate: float = 0.15
    heldout_percent: float = 5.0
    eval_every: int = 0  # 0: evaluate only before and after training
    eval_sentences: int = 2000
    checkpoint_every: int = 200
    log_every: int = 10
    precision: str = "auto"  # auto: bf16 (else fp16) autocast on CUDA, fp32 on CPU
    device: str = "auto"
    seed: int = 0
    threads: int | None = None
    keep_run_dir: bool = False
    trained_only: bool = False  # write only the trained tensors (fp16) and what they apply to: trained.py
    max_file_mb: float = 16.0  # --trained-only: the largest file written
    resume: bool = False

    @property
    def run_path(self) -> Path:
        return self.run_dir or self.out.with_name(f"{self.out.name}.run")

    def check(self) -> None:
        problems = [
            (self.temperature <= 0, f"--temperature must be positive (got {self.temperature})"),
            (min(self.alpha_ce, self.alpha_mlm, self.alpha_cos) < 0, "the --alpha-* weights must be >= 0"),
            (self.alpha_ce + self.alpha_mlm + self.alpha_cos == 0, "at least one --alpha-* weight must be > 0"),
            (self.max_steps < 1, f"--max-steps must be at least 1 (got {self.max_steps})"),
            (self.lr <= 0, f"--lr must be positive (got {self.lr})"),
            (not 0 <= self.warmup < 1, f"--warmup is a fraction of the steps in [0, 1) (got {self.warmup})"),
            (self.accumulate < 1, f"--accumulate must be at least 1 (got {self.accumulate})"),
            (self.max_length < 8, f"--max-length must be at least 8 (got {self.max_length})"),
            (self.batch_tokens < self.max_length, f"--batch-tokens ({self.batch_tokens}) must hold one sequence of --max-length ({self.max_length})"),
            (not 0 < self.mask_rate < 1, f"--mask-rate must be in (0, 1) (got {self.mask_rate})"),
            (not 0 < self.heldout_percent < 100, f"--heldout-percent must be in (0, 100) (got {self.heldout_percent})"),
            (self.checkpoint_every < 1 or self.log_every < 1, "--checkpoint-every and --log-every must be at least 1"),
            (self.eval_every < 0, "--eval-every must be >= 0"),
            (self.eval_sentences < 1, "--eval-sentences must be at least 1"),
            (self.max_file_mb <= 0, f"--max-file-mb must be positive (got {self.max_file_mb})"),
            (self.student_layers is not None and self.student_layers < 1, "--student-layers must be at least 1"),
            (self.ce_positions not in CE_POSITIONS, f"--ce-positions must be one of {', '.join(CE_POSITIONS)}"),
            (self.precision not in PRECISIONS, f"--precision must be one of {', '.join(PRECISIONS)}"),
            (self.device not in DEVICES, f"--device must be one of {', '.join(DEVICES)}"),
        ]
        for failed, message in problems:
            if failed:
                raise InvalidOptionError(message)
        if self.init_layers is not None and self.student_layers not in (None, len(self.init_layers)):
            raise InvalidOptionError(f"--init-layers names {len(self.init_layers)} layers but --student-layers is {self.student_layers}")

    @property
    def effective_alpha_ce(self) -> float:
        """Teacher-free runs have no teacher distribution to match."""
        return 0.0 if self.teacher_free else self.alpha_ce

    def run_defining(self) -> dict[str, Any]:
        """The JSON-able values --resume compares."""
        values = asdict(self)
        return {name: _jsonable(values[name]) for name in RUN_DEFINING}

    def to_json(self) -> dict[str, Any]:
        return {field.name: _jsonable(getattr(self, field.name)) for field in fields(self)}


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value
