"""Train the masked-LM head on the frozen MiniLM body (`python -m model_export.default_model train`).

The body is frozen, so it runs once: hidden states at the selected positions of the training
stream are computed under no_grad (fp32, exactly what the served model computes) and kept, then
the ~180k head parameters (vocab_transform, vocab_layer_norm, projector bias; the projector weight
is the frozen, tied word-embedding matrix) are trained on them for many passes. The projector
matmul runs in bfloat16 (4x faster here); everything else is fp32. Step counts, not wall time,
fix the schedule, so a rerun with the same arguments reproduces the weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from model_export.default_model import HEAD_WEIGHTS, HELDOUT_SLICE, TRAINING_LOG
from model_export.default_model import corpus as corpus_recipe
from model_export.default_model.masking import (
    KIND_MASK, MASK_ID, Accuracy, MaskedSequence, baseline_from_counts, batches, encode_paragraphs, frequency_baseline,
    load_tokenizer, mask_sequences, masked_accuracy, pad,
)

if TYPE_CHECKING:
    import torch

TRAIN_MASK_SEED = 1
EVAL_MASK_SEED = 2
SLICE_MASK_SEED = 3
TORCH_SEED = 0


@dataclass(frozen=True)
class TrainConfig:
    train_tokens: int = 1_500_000
    eval_chars: int = 600_000
    slice_chars: int = 200_000
    head_steps: int = 400
    batch_size: int = 2048
    peak_lr: float = 3e-3
    warmup_steps: int = 30
    eval_every: int = 100
    threads: int = 1


def _log(message: str) -> None:
    print(f"[train] {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def _take_chars(paragraphs: list[tuple[str, str]], limit: int) -> list[tuple[str, str]]:
    taken, total = [], 0
    for item in paragraphs:
        if total >= limit:
            break
        taken.append(item)
        total += len(item[1])
    return taken


def body_features(model, masked: list[MaskedSequence], only_mask: bool, dtype=None) -> tuple[torch.Tensor, np.ndarray]:
    """Final hidden states at the selected positions (or only the [MASK] ones) and their labels.

    Stored as float16 by default (the training cache); pass torch.float32 for evaluation."""
    import torch

    dtype = dtype or torch.float16
    hidden_parts, label_parts = [], []
    for indices in batches(masked):
        ids, attention = pad(masked, indices)
        with torch.no_grad():
            hidden = model.distilbert(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(attention)).last_hidden_state
        for row, index in enumerate(indices):
            item = masked[index]
            keep = item.kinds == KIND_MASK if only_mask else np.ones(len(item.positions), dtype=bool)
            hidden_parts.append(hidden[row, torch.from_numpy(item.positions[keep])].to(dtype))
            label_parts.append(item.labels[keep])
    return torch.cat(hidden_parts), np.concatenate(label_parts)


class HeadTrainer:
    """The MLM head's free parameters, trained on cached hidden states."""

    def __init__(self, model, unigram_counts: np.ndarray) -> None:
        import torch

        self.model = model
        with torch.no_grad():
            # Identity transform: the frozen final hidden states already carry the token's meaning;
            # start the bias at log unigram frequency so step 0 is the frequency baseline.
            model.vocab_transform.weight.copy_(torch.eye(model.vocab_transform.weight.shape[0]))
            model.vocab_transform.bias.zero_()
            model.vocab_layer_norm.weight.fill_(1.0)
            model.vocab_layer_norm.bias.zero_()
            log_freq = torch.log(torch.from_numpy(unigram_counts).double() + 0.1)
            model.vocab_projector.bias.copy_((log_freq - log_freq.max()).float())
        self.parameters = [model.vocab_transform.weight, model.vocab_transform.bias, model.vocab_layer_norm.weight,
                           model.vocab_layer_norm.bias, model.vocab_projector.bias]
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        for parameter in self.parameters:
            parameter.requires_grad_(True)
        self.embeddings_bf16 = model.distilbert.embeddings.word_embeddings.weight.detach().to(torch.bfloat16)

    def logits(self, hidden: torch.Tensor, exact: bool = False) -> torch.Tensor:
        import torch

        model = self.model
        x = model.vocab_layer_norm(model.activation(model.vocab_transform(hidden.float())))
        if exact:
            return model.vocab_projector(x)
        return (x.to(torch.bfloat16) @ self.embeddings_bf16.T).float() + model.vocab_projector.bias

    def train(self, hidden, labels: np.ndarray, config: TrainConfig, evaluate: Callable[[], Accuracy]) -> list[dict]:
        import torch

        generator = torch.Generator().manual_seed(TORCH_SEED)
        optimizer = torch.optim.AdamW(self.parameters, lr=config.peak_lr, weight_decay=0.0)
        targets = torch.from_numpy(labels)
        history, order, cursor, started = [], torch.randperm(len(targets), generator=generator), 0, time.time()
        for step in range(1, config.head_steps + 1):
            if step <= config.warmup_steps:
                lr = config.peak_lr * step / config.warmup_steps
            else:
                progress = (step - config.warmup_steps) / max(1, config.head_steps - config.warmup_steps)
                lr = config.peak_lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))
            for group in optimizer.param_groups:
                group["lr"] = lr
            if cursor + config.batch_size > len(targets):
                order, cursor = torch.randperm(len(targets), generator=generator), 0
            index = order[cursor : cursor + config.batch_size]
            cursor += config.batch_size
            loss = torch.nn.functional.cross_entropy(self.logits(hidden[index]), targets[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step % 20 == 0:
                _log(f"step {step}/{config.head_steps} loss {loss.item():.3f} lr {lr:.2e} ({time.time() - started:.0f}s)")
            if step % config.eval_every == 0 or step == config.head_steps:
                accuracy = evaluate()
                history.append({"step": step, "loss": round(loss.item(), 4), "epoch": round(step * config.batch_size / len(targets), 2),
                                "heldout_top1": round(accuracy.top1, 4), "heldout_top5": round(accuracy.top5, 4),
                                "seconds": round(time.time() - started, 1)})
                _log(f"eval {history[-1]}")
        return history

    def state(self) -> dict[str, torch.Tensor]:
        model = self.model
        return {
            "vocab_transform.weight": model.vocab_transform.weight.detach().clone().contiguous(),
            "vocab_transform.bias": model.vocab_transform.bias.detach().clone(),
            "vocab_layer_norm.weight": model.vocab_layer_norm.weight.detach().clone(),
            "vocab_layer_norm.bias": model.vocab_layer_norm.bias.detach().clone(),
            "vocab_projector.bias": model.vocab_projector.bias.detach().clone(),
        }


def torch_mask_logits(model) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The served computation in PyTorch (fp32): vocab logits at [MASK] positions, row-major.

    Like the exported graph, the head runs only at [MASK] positions (full-vocab logits at every
    position would cost more than the body)."""
    import torch

    def predict(ids: np.ndarray, attention: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            input_ids = torch.from_numpy(ids)
            hidden = model.distilbert(input_ids=input_ids, attention_mask=torch.from_numpy(attention)).last_hidden_state
            x = model.vocab_layer_norm(model.activation(model.vocab_transform(hidden[input_ids == MASK_ID])))
            return model.vocab_projector(x).numpy()

    return predict


def read_slice(path: Path = HELDOUT_SLICE) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def masked_slice(path: Path = HELDOUT_SLICE) -> list[MaskedSequence]:
    return mask_sequences(encode_paragraphs(load_tokenizer(), read_slice(path)), SLICE_MASK_SEED)


def slice_accuracy(predict: Callable[[np.ndarray, np.ndarray], np.ndarray], path: Path = HELDOUT_SLICE) -> Accuracy:
    """The model card's slice figure: masking is fixed by SLICE_MASK_SEED."""
    return masked_accuracy(predict, masked_slice(path))


def _training_stream(tokenizer, paragraphs: list[tuple[str, str]], budget: int) -> list[MaskedSequence]:
    sequences, tokens, cursor, chunk = [], 0, 0, 2000
    while tokens < budget and cursor < len(paragraphs):
        for sequence in encode_paragraphs(tokenizer, [text for _, text in paragraphs[cursor : cursor + chunk]]):
            if tokens >= budget:
                break
            sequences.append(sequence)
            tokens += len(sequence)
        cursor += chunk
    return mask_sequences(sequences, TRAIN_MASK_SEED)


def train(config: TrainConfig = TrainConfig(), corpus_dir: Path = corpus_recipe.DEFAULT_CORPUS_DIR,
          weights_path: Path = HEAD_WEIGHTS, log_path: Path = TRAINING_LOG, slice_path: Path = HELDOUT_SLICE) -> dict:
    import torch
    from safetensors.torch import save_file

    from model_export.default_model.build import minilm_dir
    from model_export.default_model.convert import convert_minilm

    torch.set_num_threads(config.threads)
    torch.manual_seed(TORCH_SEED)
    started = time.time()
    root = corpus_recipe.fetch(corpus_dir, log=_log)
    split = corpus_recipe.split(root)
    tokenizer = load_tokenizer()
    _log(f"corpus: {len(split.train)} training / {len(split.heldout)} held-out paragraphs ({time.time() - started:.0f}s)")

    eval_paragraphs = _take_chars(split.heldout, config.eval_chars)
    # The committed slice is Austen only: public domain, so it can ship in the repository.
    slice_paragraphs = _take_chars([item for item in split.heldout if item[0] == "austen"], config.slice_chars)
    slice_path.write_text("".join(text.replace("\n", " ") + "\n" for _, text in slice_paragraphs), encoding="utf-8")
    masked_eval = mask_sequences(encode_paragraphs(tokenizer, [text for _, text in eval_paragraphs]), EVAL_MASK_SEED)

    model = convert_minilm(minilm_dir())
    key = hashlib.sha256(json.dumps([config.train_tokens, config.eval_chars, TRAIN_MASK_SEED, EVAL_MASK_SEED,
                                     corpus_recipe.SEED, corpus_recipe.HELDOUT_PERCENT, corpus_recipe.SOURCE_WEIGHTS,
                                     len(split.train), len(split.heldout)]).encode()).hexdigest()[:16]
    cache_path = corpus_dir / "cache" / f"features-{key}.pt"
    if cache_path.is_file():
        cached = torch.load(cache_path)
        _log(f"reusing the frozen body's cached hidden states from {cache_path}")
    else:
        masked_train = _training_stream(tokenizer, split.train, config.train_tokens)
        tokens = sum(len(item.input_ids) for item in masked_train)
        _log(f"training stream: {len(masked_train)} sequences, {tokens} tokens; running the frozen body once")
        body_started = time.time()
        hidden, labels = body_features(model, masked_train, only_mask=False)
        body_seconds = time.time() - body_started
        _log(f"cached {len(labels)} training positions in {body_seconds:.0f}s ({tokens / body_seconds:.0f} tokens/s)")
        eval_hidden, eval_labels = body_features(model, masked_eval, only_mask=True, dtype=torch.float32)
        _log(f"cached {len(eval_labels)} held-out [MASK] positions")
        cached = {"hidden": hidden, "labels": torch.from_numpy(labels), "eval_hidden": eval_hidden,
                  "eval_labels": torch.from_numpy(eval_labels), "tokens": tokens, "body_seconds": body_seconds,
                  "baseline": asdict(frequency_baseline(masked_train, masked_eval))}
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(cached, cache_path)
    hidden, labels = cached["hidden"], cached["labels"].numpy()
    eval_hidden, eval_labels = cached["eval_hidden"], cached["eval_labels"].numpy()
    tokens, body_seconds, baseline = cached["tokens"], cached["body_seconds"], Accuracy(**cached["baseline"])
    counts = np.bincount(labels, minlength=model.config.vocab_size)
    trainer = HeadTrainer(model, counts)
    eval_targets = torch.from_numpy(eval_labels)

    def evaluate_cached(exact: bool = False) -> Accuracy:
        with torch.no_grad():
            hits1 = hits5 = 0
            for start in range(0, len(eval_targets), 4096):
                logits = trainer.logits(eval_hidden[start : start + 4096], exact=exact)
                top5 = logits.topk(5, dim=1).indices
                target = eval_targets[start : start + 4096]
                hits1 += int((top5[:, 0] == target).sum())
                hits5 += int((top5 == target[:, None]).any(dim=1).sum())
        return Accuracy(hits1 / len(eval_targets), hits5 / len(eval_targets), len(eval_targets))

    initial = evaluate_cached()
    _log(f"baseline {baseline}; head at initialisation {initial}")
    head_started = time.time()
    history = trainer.train(hidden, labels, config, evaluate_cached)
    head_seconds = time.time() - head_started
    state = trainer.state()
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(weights_path), metadata={"base": "sentence-transformers/all-MiniLM-L6-v2", "format": "pt"})

    model.eval()
    final = evaluate_cached(exact=True)
    on_slice = slice_accuracy(torch_mask_logits(model), slice_path)
    slice_baseline = baseline_from_counts(counts, masked_slice(slice_path))
    record = {
        "command": "python -m model_export.default_model train",
        "config": asdict(config),
        "seeds": {"corpus": corpus_recipe.SEED, "train_mask": TRAIN_MASK_SEED, "eval_mask": EVAL_MASK_SEED,
                  "slice_mask": SLICE_MASK_SEED, "torch": TORCH_SEED},
        "corpus": {"packages": list(corpus_recipe.PACKAGES), "heldout_percent": corpus_recipe.HELDOUT_PERCENT,
                   "source_weights": corpus_recipe.SOURCE_WEIGHTS, "train_paragraphs": len(split.train),
                   "heldout_paragraphs": len(split.heldout), "train_tokens_used": tokens,
                   "train_positions": int(len(labels)), "features_cache": str(cache_path), "eval_paragraphs": len(eval_paragraphs),
                   "slice_paragraphs": len(slice_paragraphs)},
        "baseline_most_frequent": asdict(baseline),
        "head_at_init": asdict(initial),
        "heldout": asdict(final),
        "heldout_slice": asdict(on_slice),
        "heldout_slice_baseline_most_frequent": asdict(slice_baseline),
        "history": history,
        "seconds": {"body_features": round(body_seconds, 1), "head": round(head_seconds, 1),
                    "total": round(time.time() - started, 1)},
        "environment": {"torch": torch.__version__, "python": platform.python_version(), "threads": config.threads,
                        "cpu": platform.processor() or platform.machine()},
    }
    log_path.write_text(json.dumps(record, indent=2) + "\n")
    _log(f"held-out {final}; slice {on_slice}; baseline {baseline}; wrote {weights_path} and {log_path}")
    return record
