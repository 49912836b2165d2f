"""Loading checkpoints as they are saved: missing tensors the exported graph never reads are fine."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from model_export.errors import MissingFilesError
from model_export.loading import load_checkpoint, resolve_source
from tests.tiny_models import build_tiny_checkpoint


def _drop_tensors(checkpoint: Path, *names: str) -> None:
    weights = checkpoint / "model.safetensors"
    tensors = load_file(weights)
    assert set(names) <= set(tensors), sorted(tensors)
    save_file({name: tensor for name, tensor in tensors.items() if name not in names}, weights, metadata={"format": "pt"})


def test_a_bert_model_saved_without_its_pooler_loads(tmp_path: Path) -> None:
    checkpoint = build_tiny_checkpoint(tmp_path / "checkpoint", "bert-encoder", pooler=False)
    loaded = load_checkpoint(resolve_source(str(checkpoint)))
    assert loaded.architecture == "BertModel" and not loaded.has_mlm_head


@pytest.mark.parametrize(
    ("kind", "used"),
    [
        ("bert-encoder", "encoder.layer.0.attention.self.query.weight"),
        ("bert-mlm", "cls.predictions.transform.dense.weight"),  # the head feeds mask_logits
    ],
)
def test_a_missing_tensor_the_graph_uses_is_still_refused(tmp_path: Path, kind: str, used: str) -> None:
    checkpoint = build_tiny_checkpoint(tmp_path / "checkpoint", kind)
    _drop_tensors(checkpoint, used)
    with pytest.raises(MissingFilesError, match=f"1 missing tensor\\(s\\) the exported graph uses, e.g. .*{used}"):
        load_checkpoint(resolve_source(str(checkpoint)))
