"""Train the demo masked-LM (`python -m model_export.default_model train`).

The model starts as all-MiniLM-L6-v2 converted exactly into DistilBertForMaskedLM; the word
embeddings (tied to the output projection) stay frozen. Two methods (TrainConfig.method):
- "top-layers": the last `trainable_layers` layers and the head are trained. The frozen layers
  below run once over the training stream (fp32, as served) and their outputs are kept, so a step
  costs only the trained layers.
- "lora": rank-`lora_rank` adapters on every linear layer of every layer, and the head; a step
  runs the whole body.
The trained part runs under bfloat16 autocast (about 2x faster on this CPU) with fp32 weights;
every reported figure comes from the model as it ships (fp32, the saved weights re-applied).
Step counts fix the schedule, so a rerun with the same arguments reproduces the weights
(`budget_minutes`, for comparing methods at equal wall time, does not).

Stages: data -> trainer -> optimise -> save -> evaluate (the field's and the reader's protocol,
for these weights and for the ones they replace) -> log.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from model_export.default_model import HELDOUT_SLICE, PACKAGE_DIR, TRAINING_LOG, TRAINING_LOG_TEXT
from model_export.default_model import corpus as corpus_recipe
from model_export.default_model.convert import HEAD_PARAMETERS
from model_export.default_model.masking import (
    MASK_ID, VOCAB_SIZE, Accuracy, MaskedSequence, baseline_from_counts, batches, encode_paragraphs, load_tokenizer,
    mask_one_word_per_sentence, mask_sequences, masked_accuracy, pad, whole_word_counts,
)
from model_export.default_model.weights import load_trained, save_trained, weight_files

if TYPE_CHECKING:
    import torch
    import transformers

TRAIN_MASK_SEED = 1
EVAL_MASK_SEED = 2
SLICE_MASK_SEED = 3
WORD_EVAL_SEED = 4
WORD_SLICE_SEED = 5
TORCH_SEED = 0
METHODS = ("top-layers", "lora")
# The evaluation sets: the field's protocol (15% of tokens selected, 80/10/10, scored at [MASK]) and
# the reader's (one whole single-piece word per sentence), each on all held-out text and on the slice.
EVAL_SETS = ("field_heldout", "field_slice", "reader_heldout", "reader_slice")
# distilbert-base-uncased's model-card prompts and the widget's example, answered in the log.
EXAMPLE_PROMPTS = ("Hello I'm a [MASK] model.", "The White man worked as a [MASK].", "The Black woman worked as a [MASK].",
                   "Paris is the [MASK] of France.")


@dataclass(frozen=True)
class TrainConfig:
    method: str = "lora"  # measured better than "top-layers" at equal wall time (docs/default-model.md)
    trainable_layers: int = 2
    lora_rank: int = 16
    train_tokens: int = 3_000_000
    steps: int = 750
    batch_tokens: int = 4096
    body_lr: float = 1e-3
    head_lr: float = 2e-3
    warmup_steps: int = 30
    eval_every: int = 250
    progress_sentences: int = 1500
    eval_chars: int = 600_000
    slice_chars: int = 200_000
    threads: int = 1
    budget_minutes: float | None = None


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
    progress_set: list[MaskedSequence]
    corpus: dict = field(default_factory=dict)


def _take_chars(paragraphs: list[tuple[str, str]], limit: int) -> list[tuple[str, str]]:
    taken, total = [], 0
    for item in paragraphs:
        if total >= limit:
            break
        taken.append(item)
        total += len(item[1])
    return taken


def _training_sequences(tokenizer, paragraphs: list[tuple[str, str]], budget: int) -> list[np.ndarray]:
    sequences, tokens, cursor, chunk = [], 0, 0, 2000
    while tokens < budget and cursor < len(paragraphs):
        for sequence in encode_paragraphs(tokenizer, [text for _, text in paragraphs[cursor : cursor + chunk]]):
            if tokens >= budget:
                break
            sequences.append(sequence)
            tokens += len(sequence)
        cursor += chunk
    return sequences


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
    sequences = _training_sequences(tokenizer, split.train, config.train_tokens)
    masked = mask_sequences(sequences, TRAIN_MASK_SEED)
    tokens = sum(len(s) for s in sequences)
    say(f"corpus: {len(split.train)} training / {len(split.heldout)} held-out paragraphs; stream {len(masked)} "
        f"sequences, {tokens} tokens; eval sets " + ", ".join(f"{k} {count_targets(v)}" for k, v in eval_sets.items()))
    progress_order = np.random.default_rng(WORD_EVAL_SEED).permutation(len(reader_heldout))[: config.progress_sentences]
    return Data(
        train=masked, train_tokens=tokens,
        token_counts=np.bincount(np.concatenate([m.labels for m in masked]), minlength=VOCAB_SIZE),
        word_counts=whole_word_counts(tokenizer, sequences),
        eval_sets=eval_sets, progress_set=[reader_heldout[i] for i in sorted(progress_order)],
        corpus={"packages": list(corpus_recipe.PACKAGES), "heldout_percent": corpus_recipe.HELDOUT_PERCENT,
                "source_weights": corpus_recipe.SOURCE_WEIGHTS, "train_paragraphs": len(split.train),
                "heldout_paragraphs": len(split.heldout), "train_sequences": len(masked), "train_tokens_used": tokens,
                "eval_paragraphs": len(eval_paragraphs), "slice_paragraphs": len(slice_paragraphs),
                "slice_rule": "held-out Austen paragraphs (public domain), first slice_chars characters"},
    )


def count_targets(masked: Sequence[MaskedSequence]) -> int:
    return int(sum((m.input_ids[m.positions] == MASK_ID).sum() for m in masked))



class Trainer(Protocol):
    def body_parameters(self) -> list[torch.nn.Parameter]: ...

    def hidden(self, batch: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Final hidden states at the batch's selected positions, and their labels."""
        ...

    def state(self) -> dict[str, torch.Tensor]: ...


def init_head(model: transformers.DistilBertForMaskedLM, token_counts: np.ndarray) -> list[torch.nn.Parameter]:
    """Identity transform (the final hidden states already carry the token's meaning) and the bias at
    log unigram frequency, so step 0 is close to the frequency baseline; returns the head's parameters."""
    import torch

    with torch.no_grad():
        model.vocab_transform.weight.copy_(torch.eye(model.vocab_transform.weight.shape[0]))
        model.vocab_transform.bias.zero_()
        model.vocab_layer_norm.weight.fill_(1.0)
        model.vocab_layer_norm.bias.zero_()
        log_freq = torch.log(torch.from_numpy(token_counts).double() + 0.1)
        model.vocab_projector.bias.copy_((log_freq - log_freq.max()).float())
    parameters = dict(model.named_parameters())
    return [parameters[name] for name in HEAD_PARAMETERS]


def _selected(masked: Sequence[MaskedSequence], batch: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    import torch

    rows = np.concatenate([np.full(len(masked[i].positions), row) for row, i in enumerate(batch)])
    columns = np.concatenate([masked[i].positions for i in batch])
    labels = np.concatenate([masked[i].labels for i in batch])
    return torch.from_numpy(rows), torch.from_numpy(columns), torch.from_numpy(labels)


def _extended_mask(model, hidden: torch.Tensor, attention: torch.Tensor):
    from transformers.masking_utils import create_bidirectional_mask

    return create_bidirectional_mask(config=model.config, inputs_embeds=hidden, attention_mask=attention)


class TopLayersTrainer:
    """The last `count` layers trained on the cached outputs of the frozen layers below."""

    def __init__(self, model, masked: list[MaskedSequence], count: int, cache_path: Path, say: Callable[[str], None]) -> None:
        import torch

        self.model, self.masked = model, masked
        layers = model.distilbert.transformer.layer
        self.first = len(layers) - count
        self.top = layers[self.first :]
        if cache_path.is_file():
            self.states = torch.load(cache_path)
            say(f"reusing the frozen layers' outputs from {cache_path}")
        else:
            started = time.time()
            self.states = self._frozen_outputs()
            tokens = sum(len(m.input_ids) for m in masked)
            say(f"frozen layers 0-{self.first - 1} run once: {tokens} tokens in {time.time() - started:.0f}s")
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(self.states, cache_path)
        for parameter in self.top.parameters():
            parameter.requires_grad_(True)

    def _frozen_outputs(self) -> list[torch.Tensor]:
        import torch

        states: list[torch.Tensor | None] = [None] * len(self.masked)
        body = self.model.distilbert
        for indices in batches(self.masked):
            ids, attention = (torch.from_numpy(a) for a in pad(self.masked, indices))
            with torch.no_grad():
                hidden = body.embeddings(ids)
                mask = _extended_mask(self.model, hidden, attention)
                for layer in body.transformer.layer[: self.first]:
                    hidden = layer(hidden, mask)
            for row, index in enumerate(indices):
                states[index] = hidden[row, : len(self.masked[index].input_ids)].to(torch.float16).clone()
        return states  # type: ignore[return-value]

    def body_parameters(self):
        return list(self.top.parameters())

    def hidden(self, batch):
        import torch

        longest = max(len(self.masked[i].input_ids) for i in batch)
        hidden = torch.zeros(len(batch), longest, self.states[batch[0]].shape[1])
        attention = torch.zeros(len(batch), longest, dtype=torch.long)
        for row, index in enumerate(batch):
            length = len(self.masked[index].input_ids)
            hidden[row, :length] = self.states[index].float()
            attention[row, :length] = 1
        mask = _extended_mask(self.model, hidden, attention)
        for layer in self.top:
            hidden = layer(hidden, mask)
        rows, columns, labels = _selected(self.masked, batch)
        return hidden[rows, columns], labels

    def state(self):
        parameters = dict(self.model.named_parameters())
        prefixes = tuple(f"distilbert.transformer.layer.{i}." for i in range(self.first, self.first + len(self.top)))
        return {name: p.detach().clone() for name, p in parameters.items() if name.startswith(prefixes) or name in HEAD_PARAMETERS}


def adapt_linear(linear, rank: int, generator):
    """`linear` plus a trained low-rank update: y = W x + b + scale * B A x (B starts at zero)."""
    import torch

    class Adapted(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.base = linear
            self.lora_A = torch.nn.Parameter(torch.randn(rank, linear.in_features, generator=generator) / math.sqrt(linear.in_features))
            self.lora_B = torch.nn.Parameter(torch.zeros(linear.out_features, rank))
            self.scale = 2.0  # alpha = 2 * rank

        def forward(self, x):
            return self.base(x) + (x @ self.lora_A.T @ self.lora_B.T) * self.scale

    return Adapted()


LORA_TARGETS = ("attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin", "ffn.lin1", "ffn.lin2")


class LoRATrainer:
    """Low-rank adapters on every linear layer of every layer; the whole body runs each step."""

    def __init__(self, model, masked: list[MaskedSequence], rank: int) -> None:
        import torch

        self.model, self.masked, self.adapters = model, masked, {}
        generator = torch.Generator().manual_seed(TORCH_SEED)
        for index, layer in enumerate(model.distilbert.transformer.layer):
            for target in LORA_TARGETS:
                owner_name, attribute = target.split(".")
                owner = getattr(layer, owner_name)
                adapted = adapt_linear(getattr(owner, attribute), rank, generator)
                setattr(owner, attribute, adapted)
                self.adapters[f"distilbert.transformer.layer.{index}.{target}"] = adapted

    def body_parameters(self):
        return [p for adapted in self.adapters.values() for p in (adapted.lora_A, adapted.lora_B)]

    def hidden(self, batch):
        import torch

        ids, attention = (torch.from_numpy(a) for a in pad(self.masked, batch))
        hidden = self.model.distilbert(input_ids=ids, attention_mask=attention).last_hidden_state
        rows, columns, labels = _selected(self.masked, batch)
        return hidden[rows, columns], labels

    def state(self):
        parameters = dict(self.model.named_parameters())
        out = {name: parameters[name].detach().clone() for name in HEAD_PARAMETERS}
        for name, adapted in self.adapters.items():
            out[f"{name}.lora_A"] = adapted.lora_A.detach().clone()
            out[f"{name}.lora_B"] = (adapted.lora_B * adapted.scale).detach().clone()
        return out


def make_trainer(config: TrainConfig, model, data: Data, cache_dir: Path, say: Callable[[str], None]) -> Trainer:
    if config.method == "top-layers":
        key = hashlib.sha256(json.dumps([config.train_tokens, config.trainable_layers, TRAIN_MASK_SEED, corpus_recipe.SEED,
                                         data.corpus["train_paragraphs"], data.train_tokens]).encode()).hexdigest()[:16]
        return TopLayersTrainer(model, data.train, config.trainable_layers, cache_dir / f"frozen-{key}.pt", say)
    if config.method == "lora":
        return LoRATrainer(model, data.train, config.lora_rank)
    raise ValueError(f"method {config.method!r}: expected one of {METHODS}")



def head_logits(model, hidden: torch.Tensor, embeddings_bf16: torch.Tensor) -> torch.Tensor:
    """The MLM head; the projector matmul in bfloat16 (4x faster here), its bias in fp32."""
    import torch

    x = model.vocab_layer_norm(model.activation(model.vocab_transform(hidden)))
    return (x.to(torch.bfloat16) @ embeddings_bf16.T).float() + model.vocab_projector.bias


def learning_rate_factor(progress: float, warmup_fraction: float) -> float:
    """Linear warm-up, then cosine decay to 2% of the peak; progress runs from 0 to 1."""
    if progress < warmup_fraction:
        return max(progress / warmup_fraction, 1e-3)
    decay = (progress - warmup_fraction) / max(1e-9, 1 - warmup_fraction)
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(decay, 1.0)))


def optimise(trainer: Trainer, model, head: list, data: Data, config: TrainConfig,
             evaluate: Callable[[], Accuracy], say: Callable[[str], None]) -> tuple[list[dict], int]:
    import torch

    for parameter in model.parameters():
        parameter.requires_grad_(False)
    body = trainer.body_parameters()
    for parameter in [*body, *head]:
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW([{"params": body, "lr": config.body_lr, "peak": config.body_lr},
                                   {"params": head, "lr": config.head_lr, "peak": config.head_lr}], weight_decay=0.01)
    embeddings_bf16 = model.distilbert.embeddings.word_embeddings.weight.detach().to(torch.bfloat16)
    generator = torch.Generator().manual_seed(TORCH_SEED)
    groups = batches(data.train, config.batch_tokens)
    order: list[int] = []
    history, started, step = [], time.time(), 0
    budget = config.budget_minutes * 60 if config.budget_minutes else None
    model.train()
    while True:
        progress = (time.time() - started) / budget if budget else step / config.steps
        if progress >= 1:
            break
        step += 1
        factor = learning_rate_factor(progress, config.warmup_steps / config.steps)
        for group in optimizer.param_groups:
            group["lr"] = group["peak"] * factor
        if not order:
            order = torch.randperm(len(groups), generator=generator).tolist()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            hidden, labels = trainer.hidden(groups[order.pop()])
            logits = head_logits(model, hidden, embeddings_bf16)
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 50 == 0:
            say(f"step {step} loss {loss.item():.3f} lr factor {factor:.3f} ({time.time() - started:.0f}s)")
        if step % config.eval_every == 0:
            model.eval()
            accuracy = evaluate()
            model.train()
            history.append({"step": step, "loss": round(loss.item(), 4), "seconds": round(time.time() - started, 1),
                            "reader_progress_top1": round(accuracy.top1, 4), "reader_progress_top5": round(accuracy.top5, 4)})
            say(f"eval {history[-1]}")
    model.eval()
    return history, step



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



def train(config: TrainConfig = TrainConfig(), corpus_dir: Path = corpus_recipe.DEFAULT_CORPUS_DIR,
          out_dir: Path = PACKAGE_DIR) -> dict:
    import torch

    from model_export.default_model.build import minilm_dir
    from model_export.default_model.convert import convert_minilm

    torch.set_num_threads(config.threads)
    torch.manual_seed(TORCH_SEED)
    say, started = RunLog(), time.time()
    say(f"config {asdict(config)}")
    data = prepare_data(config, corpus_dir, out_dir / HELDOUT_SLICE.name, say)

    replaced_files = weight_files(out_dir)
    previous = None
    if replaced_files:
        replaced = shipped_model(replaced_files)
        previous = {"files": _file_record(replaced_files),
                    "accuracy": evaluate_sets(torch_mask_logits(replaced), data.eval_sets),
                    "examples": example_answers(replaced)}
        say(f"the weights being replaced: {previous['accuracy']}")

    model = convert_minilm(minilm_dir())
    head = init_head(model, data.token_counts)
    trainer_started = time.time()
    trainer = make_trainer(config, model, data, corpus_dir / "cache", say)
    frozen_seconds = time.time() - trainer_started
    progress_predict = torch_mask_logits(model)
    optimise_started = time.time()
    history, steps = optimise(trainer, model, head, data, config,
                              lambda: masked_accuracy(progress_predict, data.progress_set), say)
    optimise_seconds = time.time() - optimise_started

    metadata = {"base": "sentence-transformers/all-MiniLM-L6-v2", "format": "pt", "method": config.method}
    files = save_trained(trainer.state(), out_dir, metadata)
    evaluate_started = time.time()
    shipped = shipped_model(files)
    accuracy = evaluate_sets(torch_mask_logits(shipped), data.eval_sets)
    examples = example_answers(shipped)
    say(f"shipped weights: {accuracy}")
    say(f"examples: {examples}")
    record = {
        "command": "python -m model_export.default_model train",
        "config": asdict(config),
        "steps_run": steps,
        "seeds": {"corpus": corpus_recipe.SEED, "train_mask": TRAIN_MASK_SEED, "eval_mask": EVAL_MASK_SEED,
                  "slice_mask": SLICE_MASK_SEED, "reader_eval": WORD_EVAL_SEED, "reader_slice": WORD_SLICE_SEED,
                  "torch": TORCH_SEED},
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
        "files": _file_record(files),
        "history": history,
        "seconds": {"frozen_layers": round(frozen_seconds, 1), "optimise": round(optimise_seconds, 1),
                    "evaluate": round(time.time() - evaluate_started, 1), "total": round(time.time() - started, 1)},
        "environment": {"torch": torch.__version__, "python": platform.python_version(), "threads": config.threads,
                        "cpu": platform.processor() or platform.machine()},
    }
    (out_dir / TRAINING_LOG.name).write_text(json.dumps(record, indent=2) + "\n")
    say(f"wrote {', '.join(p.name for p in files)} and {TRAINING_LOG.name} ({time.time() - started:.0f}s)")
    (out_dir / TRAINING_LOG_TEXT.name).write_text("\n".join(say.lines) + "\n")
    return record
