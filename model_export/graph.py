"""The torch modules that are exported: encoder, in-graph pooling, and vocab logits only at [MASK]
positions; or a classifier's logits."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from model_export.errors import UnsupportedArchitectureError
from model_export.manifest import (
    ATTENTION_MASK,
    INPUT_IDS,
    LOGITS,
    MASK_LOGITS,
    MASK_POSITIONS,
    SENTENCE_EMBEDDING,
    TOKEN_TYPE_IDS,
)


def mlm_head(model: Any) -> nn.Module:
    """The hidden-state -> vocab-logits head of a DistilBertForMaskedLM or BertForMaskedLM."""
    if hasattr(model, "vocab_projector"):  # DistilBertForMaskedLM

        class DistilBertHead(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.transform = model.vocab_transform
                self.activation = model.activation
                self.norm = model.vocab_layer_norm
                self.projector = model.vocab_projector

            def forward(self, hidden: torch.Tensor) -> torch.Tensor:
                return self.projector(self.norm(self.activation(self.transform(hidden))))

        return DistilBertHead()
    if hasattr(model, "cls"):  # BertForMaskedLM: BertOnlyMLMHead
        return model.cls
    raise UnsupportedArchitectureError(
        f"{type(model).__name__} has no masked-LM head this exporter knows (DistilBertForMaskedLM's or BertForMaskedLM's); "
        "to export the encoder alone, set config.json's architectures to DistilBertModel or BertModel"
    )


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    if pooling == "cls":
        return hidden[:, 0]
    weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


class ServingGraph(nn.Module):
    """input_ids, attention_mask -> sentence_embedding [, mask_logits, mask_positions]."""

    def __init__(self, encoder: nn.Module, head: nn.Module | None, mask_token_id: int | None, pooling: str) -> None:
        super().__init__()
        if head is not None and mask_token_id is None:
            raise ValueError("a masked-LM head needs a mask token id")
        self.encoder = encoder
        self.head = head
        self.mask_token_id = mask_token_id
        self.pooling = pooling

    @property
    def input_names(self) -> list[str]:
        return [INPUT_IDS, ATTENTION_MASK]

    @property
    def output_names(self) -> list[str]:
        if self.head is None:
            return [SENTENCE_EMBEDDING]
        return [SENTENCE_EMBEDDING, MASK_LOGITS, MASK_POSITIONS]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        embedding = pool(hidden, attention_mask, self.pooling)
        if self.head is None:
            return (embedding,)
        # nonzero is row-major, so rows come out in (batch, position) order; the vocab projection
        # then runs only on those rows instead of on every position.
        positions = torch.nonzero(input_ids == self.mask_token_id)
        logits = self.head(hidden[positions[:, 0], positions[:, 1]])
        return embedding, logits, positions


class ClassifierGraph(nn.Module):
    """input_ids, attention_mask [, token_type_ids] -> logits: the whole transformers classifier.

    BERT's graph takes token_type_ids so that the second text of a pair gets its segment embedding;
    DistilBERT has no segment embeddings. The logits are raw: softmax or sigmoid is the server's.
    """

    mask_token_id = None  # the example input needs no mask token

    def __init__(self, classifier: nn.Module, takes_token_types: bool, per_token: bool) -> None:
        super().__init__()
        self.classifier = classifier
        self.takes_token_types = takes_token_types
        self.per_token = per_token

    @property
    def input_names(self) -> list[str]:
        return [INPUT_IDS, ATTENTION_MASK, TOKEN_TYPE_IDS] if self.takes_token_types else [INPUT_IDS, ATTENTION_MASK]

    @property
    def output_names(self) -> list[str]:
        return [LOGITS]

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> tuple[torch.Tensor]:
        segments = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return (self.classifier(input_ids=input_ids, attention_mask=attention_mask, **segments).logits,)
