"""The student, initialised as in the DistilBERT paper: the teacher's embeddings and head, and a
subset of its layers (one out of two by default), as a DistilBertForMaskedLM.

A BERT teacher is first renamed into DistilBERT's layout by default_model.convert (same function,
other names; token_type_embeddings[0] folded into the position embeddings); its masked-LM head
maps onto DistilBERT's: transform -> vocab_transform, transform LayerNorm -> vocab_layer_norm,
decoder -> vocab_projector.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from model_export.default_model.convert import HEAD_PARAMETERS, ConversionError, convert_state_dict, distilbert_config
from model_export.errors import InvalidOptionError, UnsupportedArchitectureError

_BERT_HEAD = {
    "vocab_transform.weight": "cls.predictions.transform.dense.weight",
    "vocab_transform.bias": "cls.predictions.transform.dense.bias",
    "vocab_layer_norm.weight": "cls.predictions.transform.LayerNorm.weight",
    "vocab_layer_norm.bias": "cls.predictions.transform.LayerNorm.bias",
    "vocab_projector.weight": "cls.predictions.decoder.weight",
    "vocab_projector.bias": "cls.predictions.decoder.bias",
}
_LAYER_KEY = re.compile(r"^distilbert\.transformer\.layer\.(\d+)\.(.*)$")
HEAD_MODULES = ("vocab_transform", "vocab_layer_norm")


def choose_layers(teacher_layers: int, count: int | None = None, which: Sequence[int] | None = None) -> tuple[int, ...]:
    """The teacher layers the student starts from: `which` as given, else `count` (default half)
    evenly spaced from the first, e.g. 0, 2, 4, 6, 8, 10 of 12."""
    if which is not None:
        bad = [index for index in which if not 0 <= index < teacher_layers]
        if bad or len(set(which)) != len(which) or not which:
            raise InvalidOptionError(f"--init-layers must be distinct indices in 0..{teacher_layers - 1} (got {list(which)})")
        return tuple(which)
    count = count if count is not None else max(1, teacher_layers // 2)
    if count > teacher_layers:
        raise InvalidOptionError(f"--student-layers {count} exceeds the teacher's {teacher_layers} layers")
    return tuple(index * teacher_layers // count for index in range(count))


def has_mlm_head(model: Any) -> bool:
    return type(model).__name__.endswith("ForMaskedLM")


def as_distilbert(teacher: Any) -> tuple[Any, dict[str, Any]]:
    """The teacher's config and state dict in DistilBertForMaskedLM's layout (all its layers); a
    plain encoder (BertModel, DistilBertModel) gives no head weights."""
    if teacher.config.model_type == "distilbert":
        prefix = "" if has_mlm_head(teacher) else "distilbert."
        return copy.deepcopy(teacher.config), {prefix + key: value.detach().clone() for key, value in teacher.state_dict().items()}
    try:
        config = distilbert_config(teacher.config)
    except ConversionError as error:
        raise UnsupportedArchitectureError(f"this BERT teacher does not map onto DistilBERT: {error}") from None
    config.dropout = teacher.config.hidden_dropout_prob
    config.attention_dropout = teacher.config.attention_probs_dropout_prob
    config.tie_word_embeddings = teacher.config.tie_word_embeddings
    state = teacher.state_dict()
    converted = convert_state_dict(state, teacher.config.num_hidden_layers)
    if has_mlm_head(teacher):
        converted.update({ours: state[theirs].detach().clone().float() for ours, theirs in _BERT_HEAD.items()})
    return config, converted


def init_new_head(student: Any, token_counts: np.ndarray | None) -> None:
    """A masked-LM head for an encoder that had none: identity transform and norm (the last hidden
    states already carry each token's meaning), the projector tied to the word embeddings, and its
    bias at the log unigram frequency of the training tokens, so step 0 starts near the
    most-frequent-token baseline instead of uniform."""
    import torch

    head = student.vocab_transform.weight
    with torch.no_grad():
        head.copy_(torch.eye(head.shape[0]))
        student.vocab_transform.bias.zero_()
        student.vocab_layer_norm.weight.fill_(1.0)
        student.vocab_layer_norm.bias.zero_()
        bias = student.vocab_projector.bias
        if token_counts is None:
            bias.zero_()
        else:
            counts = np.zeros(bias.shape[0]) + 0.1
            counts[: len(token_counts)] += token_counts[: bias.shape[0]]
            log_frequency = torch.from_numpy(np.log(counts))
            bias.copy_((log_frequency - log_frequency.max()).float())


def init_student(teacher: Any, layers: Sequence[int], token_counts: np.ndarray | None = None) -> Any:
    """A DistilBertForMaskedLM whose layer i is the teacher's layer layers[i] (weights copied). A
    teacher without a masked-LM head gets a new one (init_new_head, from the training token counts)."""
    import transformers

    config, state = as_distilbert(teacher)
    config.n_layers = len(layers)
    config.architectures = ["DistilBertForMaskedLM"]
    student_state = {}
    for key, value in state.items():
        match = _LAYER_KEY.match(key)
        if match is None:
            student_state[key] = value
        elif int(match.group(1)) in layers:
            student_state[f"distilbert.transformer.layer.{layers.index(int(match.group(1)))}.{match.group(2)}"] = value
    student = transformers.DistilBertForMaskedLM(config)
    new_head = not has_mlm_head(teacher)
    result = student.load_state_dict(student_state, strict=not new_head)
    if result.unexpected_keys or set(result.missing_keys) - {*HEAD_PARAMETERS, "vocab_projector.weight"}:
        raise UnsupportedArchitectureError(f"the teacher's weights do not map onto the student: {result}")
    if config.tie_word_embeddings or new_head:
        config.tie_word_embeddings = True
        student.tie_weights()
    if new_head:
        init_new_head(student, token_counts)
    student.set_attn_implementation("sdpa")
    return student


def freeze(student: Any, names: Sequence[str]) -> list[str]:
    """Stop gradients to the named parts: "embeddings", "head" (transform, norm, projector bias; the
    projector weight is tied to the embeddings), or a student layer index. Returns the frozen
    parameter names."""
    modules = {"embeddings": student.distilbert.embeddings, "head": [getattr(student, name) for name in HEAD_MODULES]}
    layers = student.distilbert.transformer.layer
    chosen = []
    for name in names:
        if name.isdigit() and int(name) < len(layers):
            chosen.append(layers[int(name)])
        elif name in modules:
            chosen.extend(modules[name] if isinstance(modules[name], list) else [modules[name]])
        else:
            raise InvalidOptionError(f"--freeze {name!r}: use embeddings, head, or a student layer index 0..{len(layers) - 1}")
    if "head" in names:
        student.vocab_projector.bias.requires_grad_(False)
    for module in chosen:
        module.requires_grad_(False)
    return [name for name, parameter in student.named_parameters() if not parameter.requires_grad]
