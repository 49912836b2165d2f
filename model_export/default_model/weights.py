"""The demo masked-LM's trained weights: which files ship and how they change the converted model.

Trained tensors are stored under DistilBertForMaskedLM state-dict names in `mlm_*.safetensors`
files, none over MAX_FILE_BYTES (git tracks no large files). A name the model has replaces that
parameter; a `<linear>.lora_A` / `<linear>.lora_B` pair is a low-rank update merged into that
linear layer's weight at build time (W + B @ A, the LoRA scale already folded into B).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from model_export.default_model import PACKAGE_DIR

if TYPE_CHECKING:
    import torch
    import transformers

WEIGHTS_GLOB = "mlm_*.safetensors"
MAX_FILE_BYTES = 4_500_000
LORA_A, LORA_B = ".lora_A", ".lora_B"
_LAYER = re.compile(r"^distilbert\.transformer\.layer\.(\d+)\.")


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
    """Replace parameters and merge low-rank updates, in place; every tensor must find its target."""
    import torch

    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in tensors.items():
            if name.endswith(LORA_B):
                continue
            if name.endswith(LORA_A):
                target = name.removesuffix(LORA_A) + ".weight"
                up = tensors.get(name.removesuffix(LORA_A) + LORA_B)
                if target not in parameters or up is None:
                    raise WeightsError(f"{name}: no {target} to merge into, or no matching {LORA_B}")
                delta = up @ tensor
                if delta.shape != parameters[target].shape:
                    raise WeightsError(f"{name}: update {tuple(delta.shape)} for {target} {tuple(parameters[target].shape)}")
                parameters[target].add_(delta)
            elif name in parameters:
                if tensor.shape != parameters[name].shape:
                    raise WeightsError(f"{name}: {tuple(tensor.shape)} for a {tuple(parameters[name].shape)} parameter")
                parameters[name].copy_(tensor)
            else:
                raise WeightsError(f"{name} is not a parameter of DistilBertForMaskedLM")
        orphans = [n for n in tensors if n.endswith(LORA_B) and n.removesuffix(LORA_B) + LORA_A not in tensors]
        if orphans:
            raise WeightsError(f"{orphans[0]} has no matching {LORA_A}")


def _file_group(name: str) -> str:
    """Layer weights go one file per layer (each under MAX_FILE_BYTES in fp16); the rest together."""
    match = _LAYER.match(name)
    if match and not (name.endswith(LORA_A) or name.endswith(LORA_B)):
        return f"layer{match.group(1)}"
    return "lora" if name.endswith((LORA_A, LORA_B)) else "head"


def save_trained(tensors: Mapping[str, torch.Tensor], directory: Path, metadata: dict[str, str]) -> list[Path]:
    """Write `tensors` as mlm_<group>.safetensors (fp16 for layers and adapters, fp32 for the head),
    removing weight files of an earlier run first; returns the files written."""
    import torch
    from safetensors.torch import save_file

    groups: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in tensors.items():
        group = _file_group(name)
        dtype = torch.float32 if group == "head" else torch.float16
        groups.setdefault(group, {})[name] = tensor.detach().to(dtype).contiguous()
    for stale in weight_files(directory):
        stale.unlink()
    written = []
    for group, members in sorted(groups.items()):
        path = directory / f"mlm_{group}.safetensors"
        save_file(members, str(path), metadata=metadata)
        if path.stat().st_size > MAX_FILE_BYTES:
            raise WeightsError(f"{path} is {path.stat().st_size} bytes, over the {MAX_FILE_BYTES} a tracked file may hold")
        written.append(path)
    return written
