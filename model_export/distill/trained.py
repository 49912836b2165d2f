"""--trained-only: the output holds only what the run changed, small enough to commit or to bring
back from a machine that returns files of limited size.

The tensors written are the student's trainable parameters and any that did not exist in the
starting checkpoint (a new masked-LM head), in fp16, under DistilBertForMaskedLM state-dict names,
one `trained_<group>.safetensors` per layer, one for the embeddings and one for the rest, none
over `max_file_bytes`. `trained_base.json` names the checkpoint they apply to (its weights'
sha256 and the layers the student took). model_export.default_model's build is one reader:
all-MiniLM-L6-v2 converted, then these tensors applied (default_model.weights.apply_trained).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from model_export.errors import InvalidOptionError

PREFIX = "trained_"
BASE_FILE = "trained_base.json"
DEFAULT_MAX_FILE_BYTES = 16_000_000
_LAYER = re.compile(r"^distilbert\.transformer\.layer\.(\d+)\.")


def trained_tensors(student: Any, new: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """The trainable parameters, and the `new` ones (not in the starting checkpoint) even if frozen.
    A projector tied to the word embeddings is one tensor, written under the embeddings' name."""
    new = set(new)
    return {name: parameter.detach() for name, parameter in student.named_parameters() if parameter.requires_grad or name in new}


def file_group(name: str) -> str:
    match = _LAYER.match(name)
    if match:
        return f"layer{match.group(1)}"
    return "embeddings" if name.startswith("distilbert.embeddings.") else "head"


def check_sizes(tensors: Mapping[str, torch.Tensor], max_file_bytes: int) -> None:
    """Refuse before training what could not be written: a group over the limit in fp16."""
    sizes: dict[str, int] = {}
    for name, tensor in tensors.items():
        sizes[file_group(name)] = sizes.get(file_group(name), 0) + tensor.numel() * 2
    for group, size in sizes.items():
        if size > max_file_bytes:
            raise InvalidOptionError(
                f"--trained-only: the trained {group} tensors take {size / 1e6:.1f} MB in fp16, over the "
                f"{max_file_bytes / 1e6:.1f} MB a file may hold; freeze it (--freeze) or raise --max-file-mb"
            )


def save_trained(tensors: Mapping[str, torch.Tensor], directory: Path, max_file_bytes: int,
                 metadata: dict[str, str]) -> list[Path]:
    """One fp16 safetensors file per group; returns the files written."""
    from safetensors.torch import save_file

    check_sizes(tensors, max_file_bytes)
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in tensors.items():
        groups.setdefault(file_group(name), {})[name] = tensor.to("cpu", torch.float16).contiguous()
    written = []
    for group, members in sorted(groups.items()):
        path = directory / f"{PREFIX}{group}.safetensors"
        save_file(members, str(path), metadata=metadata)
        written.append(path)
    return written


def write_base(directory: Path, base: dict[str, Any]) -> None:
    (directory / BASE_FILE).write_text(json.dumps(base, indent=2) + "\n")


def trained_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"{PREFIX}*.safetensors"))
