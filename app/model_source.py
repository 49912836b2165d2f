"""Which model directories to serve: configured, distilbert-base-uncased (or another source) exported
once and cached, or the offline default. No torch in this process (see below).

Order, first that applies (`resolve_model_dirs`):
1. `model_dirs` is non-empty: serve those, in order; a directory without a manifest whose
   subdirectories have one (a model repository) stands for those subdirectories, in name order.
2. `source` (default distilbert-base-uncased; a hub id or a local checkpoint directory) is already
   exported in `<cache_dir>/exports/<slug>`: serve the cached export.
3. `source` is a local directory, or a hub id and the hub is reachable (or the Hugging Face cache
   already holds it): export it once into the cache and serve it.
4. Otherwise, when `source` is the default: the offline default, two directories built once under
   `<cache_dir>/offline-default/`: the fill-mask demo (all-MiniLM-L6-v2 converted to
   DistilBertForMaskedLM and trained here on a CPU) first, so it is the default for fill-mask, then
   all-MiniLM-L6-v2 as sentence-transformers serves it (embeddings).
   A non-default source that cannot be had is an error, never silently replaced by the demo.

Exports and the build run in a child process (`python -m model_export ...`,
`python -m model_export.default_model build ...`): torch stays out of the serving process, which
would otherwise keep it loaded for its lifetime (2.41 GiB resident at ready instead of 1.11 GiB, with
the offline default).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from model_export.default_model.build import OFFLINE_DEFAULT_DIR, offline_default_dirs, stamps_current
from model_export.manifest import MANIFEST_FILE

log = logging.getLogger("distilserve.model_source")

DEFAULT_SOURCE = "distilbert-base-uncased"
DEFAULT_CACHE_DIR = Path("~/.cache/distilserve")
HUB_PROBE_TIMEOUT_S = 2.5
EXPORTS_DIR = "exports"
BUILD_HINT = (
    "install the export tools (pip install torch==2.13.0 && pip install -e '.[cpu,export]') and run "
    "`make default-model` (python -m model_export.default_model build --out {out}), "
    "or serve an exported directory with --model-dir DIR"
)


class ModelSourceError(Exception):
    """No model can be served with this configuration; the message says why and what to do."""


@dataclass(frozen=True)
class ResolvedModel:
    path: Path
    reason: str
    demo: bool


def source_slug(source: str) -> str:
    """Cache directory name for a source: the hub id with '/' -> '--', or a local directory's name
    plus a hash of its absolute path (two checkouts named alike must not share a cache entry)."""
    path = Path(source).expanduser()
    if path.is_dir():
        absolute = str(path.resolve())
        return f"local-{re.sub(r'[^A-Za-z0-9._-]', '_', path.resolve().name)}-{hashlib.sha256(absolute.encode()).hexdigest()[:10]}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", source.replace("/", "--"))


def hub_offline_reason() -> str | None:
    """Why the hub must not be used, from the environment (None when nothing forbids it)."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{name}={os.environ[name]}"
    return None


def probe_hub(timeout: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """None when the hub answers within `timeout` seconds, else a short reason."""
    offline = hub_offline_reason()
    if offline:
        return offline
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    request = urllib.request.Request(endpoint + "/api/models/distilbert-base-uncased", method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return None
    except urllib.error.HTTPError as error:
        return None if error.code < 500 else f"{endpoint} answered HTTP {error.code}"
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return f"{endpoint} unreachable ({type(reason).__name__}: {reason})"


def in_hf_cache(hub_id: str) -> bool:
    """True when the Hugging Face cache already holds the hub id's config (usable offline)."""
    if importlib.util.find_spec("huggingface_hub") is None:
        return False
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(hub_id, "config.json"), str)
    except Exception:  # a malformed id or cache is simply "not cached"
        return False


def _verifies(directory: Path) -> bool:
    from model_export.manifest import ManifestError, verify_model_dir

    try:
        verify_model_dir(directory)
    except ManifestError:
        return False
    return True


def _complete(directory: Path) -> bool:
    """The manifest parses and every file it lists is there, inside the directory. Nothing is hashed:
    at every start this only decides whether a cached build can be used, and the server's trust gate
    then hashes exactly the files it loads."""
    from model_export.manifest import ManifestError, model_file, read_manifest

    try:
        manifest = read_manifest(directory)
        listed = [manifest.tokenizer_file, *(variant.file for variant in manifest.variants.values())]
        return all(model_file(directory, name).is_file() for name in listed)
    except ManifestError:
        return False


def _is_demo(directory: Path) -> bool:
    """The manifest's demo flag, parsed without hashing: callers have verified the directory already, or
    the server's start-up check (the trust gate) verifies it next."""
    from model_export.manifest import ManifestError, read_manifest

    try:
        return read_manifest(directory).demo
    except ManifestError:
        return False


def _torch_missing() -> bool:
    return importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None


def export_source(source: str, out_dir: Path) -> None:
    """Export a hub id or checkpoint directory with every variant, in a child process (needs torch)."""
    run_build_child(["-m", "model_export", source, "--out", str(out_dir)])


def build_offline_default(root: Path) -> None:
    """Build (or reuse) the offline default's directories under `root`, in a child process (needs torch)."""
    run_build_child(["-m", "model_export.default_model", "build", "--out", str(root)])


def run_build_child(args: list[str]) -> None:
    """Run `python ARGS` with this interpreter and this checkout's packages, logging its output line by
    line as it comes (a traceback at debug level only). A failure raises ModelSourceError with one line:
    the child's last `error: ...` line, else the last line it wrote (a traceback's exception).
    At debug level the child is asked for its libraries' logs too (--verbose)."""
    package_root = str(Path(__file__).resolve().parent.parent)
    python_path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    verbose = ["--verbose"] if log.isEnabledFor(logging.DEBUG) else []
    # Unbuffered, so that stdout and stderr lines reach the log in the order they were written.
    env = {**os.environ, "PYTHONPATH": python_path, "PYTHONUNBUFFERED": "1"}
    error, last, in_traceback = "", "", False
    with subprocess.Popen([sys.executable, *args, *verbose], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace", env=env) as child:
        try:
            for line in child.stdout or ():
                line = line.rstrip()
                in_traceback = in_traceback or line.startswith("Traceback (most recent call last)")
                log.log(logging.DEBUG if in_traceback or not line else logging.INFO, "%s", line)
                if line.startswith("error: "):
                    error = line.removeprefix("error: ")
                last = line.strip() or last
        except BaseException:  # interrupted here: the child must not go on building unattended
            child.kill()
            raise
    if child.returncode != 0:
        raise ModelSourceError(error or last or f"{args[1]} exited with status {child.returncode}")


def _offline_default_is_current(root: Path) -> bool:
    """Both directories verify and were built from the committed weights (their stamps match)."""
    return stamps_current(root) and all(_complete(directory) for directory in offline_default_dirs(root))


def resolve_model_dirs(
    model_dirs: Sequence[Path],
    source: str,
    cache_dir: Path,
    *,
    probe: Callable[[], str | None] = probe_hub,
    export: Callable[[str, Path], None] = export_source,
    build_default: Callable[[Path], object] = build_offline_default,
) -> list[ResolvedModel]:
    """Choose the model directories to serve, in order, and say why for each (the reasons are
    logged and shown in /info). The first directory serving a task is that task's default."""
    if model_dirs:
        return [model for directory in model_dirs for model in _configured(Path(directory))]

    cache_dir = Path(cache_dir).expanduser()
    is_default = source == DEFAULT_SOURCE
    cached = cache_dir / EXPORTS_DIR / source_slug(source)
    if _complete(cached):
        return [_chosen(cached, f"{source}: serving the export cached in {cached}", False)]
    try:
        return [_from_source(source, cached, probe, export)]
    except SourceUnavailable as unavailable:
        why_not = str(unavailable)
    except ModelSourceError as error:
        if not is_default:
            raise
        # The default must still serve something: a failed distilbert export falls back to the demo.
        why_not = str(error)
    if not is_default:
        raise ModelSourceError(
            f"model_source {why_not}; the offline demo default is used only in place of {DEFAULT_SOURCE}. "
            "Set DISTILSERVE_MODEL_SOURCE to a local checkpoint directory or DISTILSERVE_MODEL_DIR to an exported one"
        )
    return _offline_default(cache_dir / OFFLINE_DEFAULT_DIR, why_not, build_default)


def _configured(directory: Path) -> list[ResolvedModel]:
    """A model directory, or a model repository (Triton's term): a directory without a manifest whose
    subdirectories have one, served in name order. Anything else is returned as it is, for the
    server's trust gate to refuse with its reason."""
    if not (directory / MANIFEST_FILE).exists() and directory.is_dir():
        found = sorted(child for child in directory.iterdir() if (child / MANIFEST_FILE).is_file())
        if found:
            return [_chosen(child, f"found in the model repository {directory} (model_dir)", False) for child in found]
    return [_chosen(directory, f"model_dir {directory} is configured", False)]


def _offline_default(root: Path, why_not: str, build_default: Callable[[Path], object]) -> list[ResolvedModel]:
    directories = offline_default_dirs(root)
    if not _offline_default_is_current(root):
        built = all(_verifies(directory) for directory in directories)
        try:
            if _torch_missing():
                raise ModelSourceError(BUILD_HINT.format(out=root))
            log.info("model: building the offline default into %s (once; a few minutes)", root)
            build_default(root)
        except Exception as error:  # a stale build still serves; without one, say how to build
            if not built:
                raise ModelSourceError(f"{why_not}, and the offline default could not be built in {root}: {error}") from error
            log.warning("model: the offline default in %s was built from other weights than this checkout's and "
                        "could not be rebuilt (%s); serving it as it is", root, error)
        unservable = [str(directory) for directory in directories if not _verifies(directory)]
        if unservable:
            raise ModelSourceError(f"building the offline default into {root} did not produce servable directories: "
                                   f"{', '.join(unservable)}")
    fill_mask, embed = directories
    to_serve = f"To serve {DEFAULT_SOURCE}, set DISTILSERVE_MODEL_SOURCE to a local copy or make the hub reachable"
    return [
        _chosen(fill_mask, f"offline default, fill-mask demo (all-MiniLM-L6-v2 as DistilBertForMaskedLM, trained here "
                           f"on a CPU; far below distilbert-base-uncased): {why_not}. {to_serve}", True),
        _chosen(embed, f"offline default, embeddings: sentence-transformers/all-MiniLM-L6-v2 exactly as "
                       f"sentence-transformers serves it (mean pooling): {why_not}. {to_serve}", False),
    ]


class SourceUnavailable(Exception):
    """The source cannot be had at all here (no such directory; hub unreachable, nothing cached)."""


def _from_source(source: str, cached: Path, probe: Callable[[], str | None], export: Callable[[str, Path], None]) -> ResolvedModel:
    if Path(source).expanduser().is_dir():
        return _export_and_choose(source, cached, f"{source} is a local checkpoint directory; exported into {cached}", export)
    if source.startswith((".", "/", "~")):
        raise SourceUnavailable(f"{source} is not a directory")
    unreachable = probe()
    if unreachable is None:
        return _export_and_choose(source, cached, f"{source}: the hub is reachable; exported into {cached}", export)
    if in_hf_cache(source):
        why = f"{source}: the hub is unreachable ({unreachable}) but the Hugging Face cache holds it; exported into {cached}"
        return _export_and_choose(source, cached, why, export)
    raise SourceUnavailable(f"{source} is not cached and the hub is unreachable ({unreachable})")


def _export_and_choose(source: str, cached: Path, why: str, export: Callable[[str, Path], None]) -> ResolvedModel:
    if _torch_missing():
        raise ModelSourceError(
            f"{source} must be exported once into {cached}, which needs torch and transformers: "
            f"pip install torch==2.13.0 && pip install -e '.[cpu,export]', then restart; or run "
            f"python -m model_export {source} --out {cached}"
        )
    log.info("model: exporting %s into %s (once)", source, cached)
    try:
        export(source, cached)
    except Exception as error:  # the exporter's errors are one-line and meant for the operator
        raise ModelSourceError(f"exporting {source} into {cached} failed: {error}") from error
    if not _verifies(cached):
        raise ModelSourceError(f"exporting {source} into {cached} did not produce a servable directory")
    return _chosen(cached, why, False)


def _chosen(path: Path, reason: str, demo: bool) -> ResolvedModel:
    resolved = ResolvedModel(path, reason, demo or _is_demo(path))
    log.info("model: %s", reason)
    return resolved
