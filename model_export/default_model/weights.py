"""The demo masked-LM's trained weights: which files ship and how they change the converted model.

Trained tensors are stored under DistilBertForMaskedLM state-dict names in `mlm_*.safetensors`
files, none over MAX_FILE_BYTES (git tracks no large files), as `python -m model_export.distill
--trained-only` writes them (train.py adopts its files byte for byte); each replaces the parameter
of that name in MiniLM converted into DistilBertForMaskedLM.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from model_export.default_model import PACKAGE_DIR

if TYPE_CHECKING:
    import torch
    import transformers

WEIGHTS_GLOB = "mlm_*.safetensors"
MAX_FILE_BYTES = 4_500_000


class WeightsError(ValueError):
    """Trained weights that do not fit the converted model (the message says which tensor)."""


def weight_files(directory: Path = PACKAGE_DIR) -> list[Path]:
    return sorted(directory.glob(WEIGHTS_GLOB))


def load_trained(files: list[Path]) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    tensors: dict[str, torch.Tensor] = {}
    for path in files:
        for name, tensor in load_file(str(path)).items():
            if name in tensors:
                raise WeightsError(f"{name} is in two weight files ({path.name})")
            tensors[name] = tensor.float()
    return tensors


def apply_trained(model: transformers.DistilBertForMaskedLM, tensors: Mapping[str, torch.Tensor]) -> None:
    """Replace parameters by name, in place; every tensor must name a parameter of its shape."""
    import torch

    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in tensors.items():
            if name not in parameters:
                raise WeightsError(f"{name} is not a parameter of DistilBertForMaskedLM")
            if tensor.shape != parameters[name].shape:
                raise WeightsError(f"{name}: {tuple(tensor.shape)} for a {tuple(parameters[name].shape)} parameter")
            parameters[name].copy_(tensor)
