"""One training run's moving parts (student, target, optimizer, schedule, batch stream, RNGs) and
the optimizer step; `state_dict`/`load_state_dict` are what a checkpoint saves and resumes.

The target is the teacher, or in teacher-free mode a frozen copy of the student's starting
weights (cosine only). It runs under no_grad (not inference_mode: the soft targets are saved for
the backward pass) and in eval mode. Only the rows a loss needs reach the vocabulary projection:
every non-padding token for the soft targets, else only the masked ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from model_export.distill.config import DistillConfig
from model_export.distill.data import IGNORE, BatchStream, mask_tokens
from model_export.distill.losses import LossTerms, LossWeights, cosine_loss, mlm_loss, soft_target_loss
from model_export.distill.teacher import Vocabulary
from model_export.errors import InvalidOptionError
from model_export.graph import mlm_head


@dataclass(frozen=True)
class Precision:
    device: torch.device
    autocast_dtype: torch.dtype | None  # None: fp32

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.autocast_dtype]

    def autocast(self) -> Any:
        return torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None)


def choose_precision(device: str, precision: str) -> Precision:
    """auto: CUDA when present, with bf16 autocast where supported (else fp16); fp32 on CPU."""
    if device == "cuda" and not torch.cuda.is_available():
        raise InvalidOptionError("--device cuda: torch sees no CUDA device here")
    cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    target = torch.device("cuda" if cuda else "cpu")
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    return Precision(target, {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision])


def linear_schedule(max_steps: int, warmup: float) -> Any:
    warmup_steps = max(1, int(warmup * max_steps))

    def factor(step: int) -> float:
        return min((step + 1) / warmup_steps, max(0.0, (max_steps - step) / max(1, max_steps - warmup_steps)))

    return factor


class Distiller:
    def __init__(self, config: DistillConfig, student: Any, target: Any, stream: BatchStream, vocabulary: Vocabulary,
                 precision: Precision) -> None:
        self.config, self.stream, self.vocabulary, self.precision = config, stream, vocabulary, precision
        self.student = student.to(precision.device).train()
        self.target = target.to(precision.device).eval()
        self.student_head, self.target_head = mlm_head(self.student), mlm_head(self.target)
        self.weights = LossWeights(config.effective_alpha_ce, config.alpha_mlm, config.alpha_cos)
        trainable = [p for p in self.student.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=config.lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, linear_schedule(config.max_steps, config.warmup))
        self.scaler = torch.amp.GradScaler(precision.device.type, enabled=precision.autocast_dtype == torch.float16)
        self.mask_generator = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.pending: list[dict[str, float]] = []  # per-step figures not yet folded into a log record
        self.history: list[dict[str, float]] = []
        self.evals: list[dict[str, Any]] = []
        self.run_config: dict[str, Any] = {}  # what identifies the run; saved with each checkpoint
        self.interval_started = time.perf_counter()

    def losses(self, ids: torch.Tensor, attention: torch.Tensor, labels: torch.Tensor) -> LossTerms:
        """The weighted-in loss terms of one masked batch (terms with weight 0 are not computed)."""
        keep = attention.bool()
        masked = labels[keep] != IGNORE  # over the non-padding rows, row-major
        all_rows = self.weights.ce > 0 and self.config.ce_positions == "all"
        want_logits = self.weights.ce > 0 or self.weights.mlm > 0
        with self.precision.autocast():
            student_hidden = self.student.distilbert(input_ids=ids, attention_mask=attention).last_hidden_state[keep]
            student_logits = self.student_head(student_hidden if all_rows else student_hidden[masked]) if want_logits else None
            with torch.no_grad():
                target_hidden = self.target.base_model(input_ids=ids, attention_mask=attention).last_hidden_state[keep]
                target_logits = None
                if self.weights.ce > 0:
                    target_logits = self.target_head(target_hidden if all_rows else target_hidden[masked])
        return LossTerms(
            ce=soft_target_loss(student_logits, target_logits, self.config.temperature) if target_logits is not None else None,
            mlm=mlm_loss(student_logits[masked] if all_rows else student_logits, labels[keep][masked]) if self.weights.mlm > 0 else None,
            cos=cosine_loss(student_hidden, target_hidden) if self.weights.cos > 0 else None,
        )

    def train_step(self) -> dict[str, float]:
        """One optimizer step over `accumulate` batches; returns its figures."""
        figures: dict[str, float] = {"tokens": 0.0}
        device = self.precision.device
        for _ in range(self.config.accumulate):
            ids, attention = self.stream.next()
            inputs, labels = mask_tokens(ids, attention, self.vocabulary, self.config.mask_rate, self.mask_generator)
            terms = self.losses(inputs.to(device), attention.to(device), labels.to(device))
            loss = terms.total(self.weights) / self.config.accumulate
            self.scaler.scale(loss).backward()
            figures["loss"] = figures.get("loss", 0.0) + float(loss.detach())
            for name, value in terms.as_floats().items():
                figures[name] = figures.get(name, 0.0) + value / self.config.accumulate
            figures["tokens"] += float(attention.sum())
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.student.parameters(), self.config.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        figures["lr"] = self.scheduler.get_last_lr()[0]
        self.pending.append(figures)
        return figures

    def log_record(self) -> dict[str, float]:
        """Fold the steps since the last record into one: mean losses, tokens per second."""
        seconds = time.perf_counter() - self.interval_started
        tokens = sum(f["tokens"] for f in self.pending)
        names = [name for name in ("loss", "ce", "mlm", "cos") if name in self.pending[-1]]
        record = {"step": self.step, **{n: round(sum(f[n] for f in self.pending) / len(self.pending), 6) for n in names},
                  "lr": self.pending[-1]["lr"], "tokens": int(tokens), "tokens_per_s": round(tokens / max(seconds, 1e-9), 1),
                  "epoch": self.stream.epoch}
        self.history.append(record)
        self.pending, self.interval_started = [], time.perf_counter()
        return record

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step, "student": self.student.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "stream": self.stream.position,
            "mask_rng": self.mask_generator.get_state(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "pending": self.pending, "history": self.history, "evals": self.evals,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.student.load_state_dict(state["student"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.stream.seek(**state["stream"])
        self.mask_generator.set_state(state["mask_rng"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.step, self.pending, self.history, self.evals = state["step"], state["pending"], state["history"], state["evals"]
        self.interval_started = time.perf_counter()
