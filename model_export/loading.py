"""Resolve a SOURCE (local directory or hub id) and load its config, weights and tokenizer.

A hub id is first resolved to a local snapshot directory (the hub cache), so everything after
this module reads files from one directory and the weights' sha256 is computed on the exact files
the export read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from model_export.errors import MissingFilesError, SourceNotFoundError, UnsupportedArchitectureError
from model_export.manifest import sha256_file

SUPPORTED_MODEL_TYPES = ("distilbert", "bert")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
SHARD_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
SENTENCE_TRANSFORMERS_CONFIG = "sentence_bert_config.json"
_OPTIONAL_HUB_FILES = ("tokenizer_config.json", "special_tokens_map.json", SENTENCE_TRANSFORMERS_CONFIG)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")

Head = Literal["encoder", "masked-lm", "text-classification", "token-classification"]
# The heads this exporter makes a graph of, by the suffix of config.json's architectures[0]; the
# classification heads are named by the task they serve. An encoder class (...Model), or no
# architectures at all, exports the body alone.
HEADS: dict[str, Head] = {
    "ForMaskedLM": "masked-lm",
    "ForSequenceClassification": "text-classification",
    "ForTokenClassification": "token-classification",
}
CLASSIFIER_HEADS: tuple[Head, ...] = ("text-classification", "token-classification")


@dataclass(frozen=True)
class ResolvedSource:
    kind: str  # "hub" or "local"
    id: str  # hub id, or the absolute path of the local directory
    directory: Path  # where the files are on this machine
    revision: str | None
    weight_files: tuple[Path, ...]


@dataclass
class LoadedCheckpoint:
    source: ResolvedSource
    config: Any  # transformers.PretrainedConfig
    model: Any  # the eager-attention torch model, in eval mode
    tokenizer: Any  # transformers fast tokenizer
    head: Head
    architecture: str

    @property
    def has_mlm_head(self) -> bool:
        return self.head == "masked-lm"

    @property
    def is_classifier(self) -> bool:
        return self.head in CLASSIFIER_HEADS

    @property
    def encoder(self) -> Any:
        """The body without any head: DistilBertModel or BertModel."""
        if self.head == "encoder":
            return self.model
        return getattr(self.model, self.model.base_model_prefix)


def resolve_source(source: str, revision: str | None = None) -> ResolvedSource:
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise SourceNotFoundError(f"{source}: not a directory (a checkpoint is a directory with config.json)")
        path = path.resolve()
        if not (path / "config.json").is_file():
            raise MissingFilesError(f"{path}: no config.json; is this a Hugging Face checkpoint directory?")
        check_model_type(path / "config.json")
        return ResolvedSource("local", str(path), path, revision, _weight_files(path))
    if source.startswith((".", "/", "~")) or not _HUB_ID.match(source):
        raise SourceNotFoundError(f"{source}: no such directory, and not a hub id")
    return _download(source, revision)


def _weight_files(directory: Path) -> tuple[Path, ...]:
    for index_name in SHARD_INDEXES:
        index = directory / index_name
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            missing = [shard for shard in shards if not (directory / shard).is_file()]
            if missing:
                raise MissingFilesError(f"{directory}: weight shard(s) missing: {', '.join(missing)}")
            return tuple(directory / shard for shard in shards)
    for name in WEIGHT_FILES:
        if (directory / name).is_file():
            return (directory / name,)
    raise MissingFilesError(f"{directory}: no weights ({' or '.join(WEIGHT_FILES)})")


def _download(hub_id: str, revision: str | None) -> ResolvedSource:
    """Fetch the files an export needs into the hub cache; returns the snapshot directory."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    def fetch(filename: str) -> Path | None:
        try:
            return Path(hf_hub_download(hub_id, filename, revision=revision))
        except LocalEntryNotFoundError:  # a subclass of EntryNotFoundError: offline, nothing cached
            raise SourceNotFoundError(
                f"{hub_id}: no such directory, and the hub is unreachable with no cached copy"
            ) from None
        except EntryNotFoundError:
            return None
        except RepositoryNotFoundError:
            raise SourceNotFoundError(f"{hub_id}: no such directory, and no such hub repository") from None
        except Exception as error:  # network, auth, bad revision: all one-line to the user
            raise SourceNotFoundError(f"{hub_id}: hub download failed: {type(error).__name__}: {error}") from None

    config = fetch("config.json")
    if config is None:
        raise MissingFilesError(f"{hub_id}: the hub repository has no config.json")
    check_model_type(config)
    snapshot = config.parent
    if not any(fetch(name) for name in TOKENIZER_FILES):
        raise MissingFilesError(f"{hub_id}: no tokenizer ({' or '.join(TOKENIZER_FILES)}) in the hub repository")
    for name in _OPTIONAL_HUB_FILES:
        fetch(name)
    for index_name in SHARD_INDEXES:
        index = fetch(index_name)
        if index is not None:
            for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
                fetch(shard)
            break
    else:
        if not any(fetch(name) for name in WEIGHT_FILES):
            raise MissingFilesError(f"{hub_id}: no weights ({' or '.join(WEIGHT_FILES)}) in the hub repository")
    commit = snapshot.name if _COMMIT.match(snapshot.name) else revision
    return ResolvedSource("hub", hub_id, snapshot, commit, _weight_files(snapshot))


def weights_sha256(source: ResolvedSource) -> str:
    """sha256 of the weights file, or of the shards' digests in order when sharded."""
    digests = [sha256_file(path) for path in source.weight_files]
    if len(digests) == 1:
        return digests[0]
    import hashlib

    return hashlib.sha256("".join(digests).encode()).hexdigest()


def load_checkpoint(source: ResolvedSource) -> LoadedCheckpoint:
    import transformers

    config = _load_config(source.directory)
    architectures = list(getattr(config, "architectures", None) or [])
    architecture = architectures[0] if architectures else type(config).__name__.replace("Config", "Model")
    head = head_of(architecture)
    model_class = {
        "encoder": transformers.AutoModel,
        "masked-lm": transformers.AutoModelForMaskedLM,
        "text-classification": transformers.AutoModelForSequenceClassification,
        "token-classification": transformers.AutoModelForTokenClassification,
    }[head]
    try:
        # Eager attention: with transformers 5 the sdpa export does not fuse (see docs/architecture.md).
        model, info = model_class.from_pretrained(
            source.directory, config=config, attn_implementation="eager", output_loading_info=True
        )
    except (OSError, ValueError, RuntimeError) as error:
        raise MissingFilesError(f"{source.id}: cannot load the weights: {_first_line(error)}") from None
    missing = [key for key in info.get("missing_keys", []) if "position_ids" not in key]
    # Left at their random initial values: harmless only where no exported output depends on them,
    # as with the pooler a BertModel saved with add_pooling_layer=False leaves out.
    read = graph_reads(model, head, missing)
    if read:
        raise MissingFilesError(
            f"{source.id}: the weights do not match {architecture}: {len(read)} missing tensor(s) the exported graph "
            f"uses, e.g. {read[0]}"
        )
    tokenizer = _load_tokenizer(source)
    return LoadedCheckpoint(source, config, model.eval(), tokenizer, head, architecture)


def head_of(architecture: str) -> Head:
    """Which head `architecture` (a transformers class name) carries; refuses one no graph is made for."""
    for suffix, head in HEADS.items():
        if architecture.endswith(suffix):
            return head
    if architecture.endswith("Model"):
        return "encoder"
    raise UnsupportedArchitectureError(
        f"{architecture}: this exporter makes graphs of encoders (...Model) and of masked-LM, sequence-classification "
        "and token-classification heads only; to export the encoder alone, set config.json's architectures to "
        "DistilBertModel or BertModel"
    )


def graph_reads(model: Any, head: Head, names: list[str]) -> list[str]:
    """Those of `names` (the model's parameters and buffers) that the exported outputs depend on.

    The graph reads the encoder's last hidden state (pooling is a function of it) and, for a
    masked-LM checkpoint, the head's logits; a classifier's graph is the whole model's logits. A
    parameter that gets no gradient from them is unused. Names that are not parameters (buffers)
    count as used.
    """
    if not names:
        return []
    import torch

    from model_export.graph import mlm_head

    parameters = dict(model.named_parameters())
    tracked = [name for name in names if name in parameters and parameters[name].requires_grad]
    encoder = model if head == "encoder" else getattr(model, model.base_model_prefix)
    ids = torch.tensor([[1, 2, 3]])
    with torch.enable_grad():
        if head in CLASSIFIER_HEADS:
            total = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.sum()
        else:
            hidden = encoder(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
            total = hidden.sum() + (mlm_head(model)(hidden).sum() if head == "masked-lm" else 0)
        gradients = torch.autograd.grad(total, [parameters[name] for name in tracked], allow_unused=True) if tracked else ()
    unused = {name for name, gradient in zip(tracked, gradients, strict=True) if gradient is None}
    return [name for name in names if name not in unused]


def check_model_type(config_path: Path) -> None:
    """Refuse anything but DistilBERT/BERT, or a head no graph is made for, before any weights are read or downloaded."""
    try:
        raw = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise MissingFilesError(f"{config_path}: unreadable: {_first_line(error)}") from None
    model_type = raw.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        architectures = ", ".join(raw.get("architectures") or []) or "unknown architecture"
        raise UnsupportedArchitectureError(
            f"{config_path.parent}: model_type {model_type!r} ({architectures}) is not supported; "
            f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    if raw.get("architectures"):
        head_of(raw["architectures"][0])


def sentence_transformers_max_length(directory: Path) -> int | None:
    """The max_seq_length sentence-transformers (and TEI) truncate to, when the checkpoint says one."""
    path = directory / SENTENCE_TRANSFORMERS_CONFIG
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text()).get("max_seq_length")
    except (OSError, json.JSONDecodeError, AttributeError) as error:
        raise MissingFilesError(f"{path}: unreadable: {_first_line(error)}; fix it or pass --max-length") from None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise MissingFilesError(f"{path}: max_seq_length {value!r} is not a token count; fix it or pass --max-length")
    return value


def _load_config(directory: Path) -> Any:
    import transformers

    check_model_type(directory / "config.json")
    return transformers.AutoConfig.from_pretrained(directory)


def _load_tokenizer(source: ResolvedSource) -> Any:
    import transformers

    if not any((source.directory / name).is_file() for name in TOKENIZER_FILES):
        raise MissingFilesError(f"{source.id}: no tokenizer ({' or '.join(TOKENIZER_FILES)})")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(source.directory)
    except (OSError, ValueError) as error:
        raise MissingFilesError(f"{source.id}: cannot load the tokenizer: {_first_line(error)}") from None
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise MissingFilesError(f"{source.id}: no fast tokenizer could be built (tokenizer.json)")
    return tokenizer


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
