"""Default model resolution (app.model_source): which directory is served, and the reason given.

Exports and the offline build are replaced by copies of the tiny exported model, so these tests
check the decisions, not the (separately tested) exporter.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app import model_source
from app.model_source import ModelSourceError, ResolvedModel, probe_hub, resolve_model_dirs, source_slug
from model_export import manifest as m
from model_export.default_model import build
from model_export.default_model.weights import weight_files

DEFAULT = "distilbert-base-uncased"


class Recorder:
    """Stands in for export / build: copies the tiny exported model and records the call."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir, self.calls = model_dir, []

    def export(self, source: str, out: Path, demo: bool = False) -> None:
        self.calls.append((source, out))
        shutil.copytree(self.model_dir, out)
        if demo:
            manifest = m.read_manifest(out)
            m.write_manifest(out, manifest.model_copy(update={"demo": True}))

    def build(self, root: Path) -> list[Path]:
        """The offline default's layout and stamps, as build.build_offline_default leaves them."""
        fill_mask, embed = build.offline_default_dirs(root)
        self.export("offline-default", fill_mask, demo=True)
        shutil.copytree(self.model_dir, embed)
        for directory, stamp in ((fill_mask, build.demo_stamp(weight_files())), (embed, build.embed_stamp())):
            (root / f"{directory.name}.stamp.json").write_text(json.dumps(stamp))
        return [fill_mask, embed]


def _unreachable() -> str:
    return "https://huggingface.co unreachable (test)"


def _must_not_probe() -> str:
    raise AssertionError("the hub was probed although the answer was already known")


def test_explicit_model_dirs_are_served_in_order(tmp_path: Path, tiny_mlm_model_dir: Path) -> None:
    demo = tmp_path / "demo"
    Recorder(tiny_mlm_model_dir).export("copy", demo, demo=True)
    resolved = resolve_model_dirs([tiny_mlm_model_dir, demo], DEFAULT, tmp_path, probe=_must_not_probe)
    assert resolved == [
        ResolvedModel(tiny_mlm_model_dir, f"model_dir {tiny_mlm_model_dir} is configured", False),
        ResolvedModel(demo, f"model_dir {demo} is configured", True),
    ]


def test_a_model_repository_stands_for_its_model_directories_in_name_order(
    tmp_path: Path, tiny_mlm_model_dir: Path
) -> None:
    repository = tmp_path / "models"
    for name in ("b-model", "a-model"):
        shutil.copytree(tiny_mlm_model_dir, repository / name)
    (repository / "a-model-checkpoint").mkdir()  # no manifest: not a model directory
    (repository / "notes.txt").write_text("not a model")
    resolved = resolve_model_dirs([repository, tiny_mlm_model_dir], DEFAULT, tmp_path, probe=_must_not_probe)
    assert [model.path for model in resolved] == [repository / "a-model", repository / "b-model", tiny_mlm_model_dir]
    assert resolved[0].reason == f"found in the model repository {repository} (model_dir)"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert resolve_model_dirs([empty], DEFAULT, tmp_path, probe=_must_not_probe) == [
        ResolvedModel(empty, f"model_dir {empty} is configured", False)  # the server's gate says what is missing
    ]


def test_offline_serves_the_fill_mask_demo_then_minilm_and_says_why(
    tmp_path: Path, tiny_mlm_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    builder = Recorder(tiny_mlm_model_dir)
    cache = tmp_path / "cache"
    with caplog.at_level(logging.INFO, logger="distilserve.model_source"):
        resolved = resolve_model_dirs([], DEFAULT, cache, probe=_unreachable, export=builder.export, build_default=builder.build)
    root = cache / "offline-default"
    assert [r.path for r in resolved] == [root / "fill-mask-demo", root / "all-MiniLM-L6-v2"]
    assert [r.demo for r in resolved] == [True, False], "only the fill-mask model is a demo; the embeddings are real"
    assert len(builder.calls) == 1
    why = "distilbert-base-uncased is not cached and the hub is unreachable (https://huggingface.co unreachable (test))"
    for model in resolved:
        assert why in model.reason and "DISTILSERVE_MODEL_SOURCE" in model.reason and model.reason in caplog.text
    assert "fill-mask demo" in resolved[0].reason and "all-MiniLM-L6-v2" in resolved[1].reason

    again = resolve_model_dirs([], DEFAULT, cache, probe=_unreachable, export=builder.export, build_default=builder.build)
    assert again == resolved and len(builder.calls) == 1, "the offline default is built once"


def test_an_offline_default_built_from_other_weights_is_rebuilt(tmp_path: Path, tiny_mlm_model_dir: Path) -> None:
    builder = Recorder(tiny_mlm_model_dir)
    root = tmp_path / "offline-default"
    builder.build(root)
    stale = root / "fill-mask-demo.stamp.json"
    stale.write_text(json.dumps({**json.loads(stale.read_text()), "weights": {"mlm_head.safetensors": "0" * 64}}))

    def rebuild(out: Path) -> None:
        shutil.rmtree(out)
        builder.build(out)

    resolve_model_dirs([], DEFAULT, tmp_path, probe=_unreachable, build_default=rebuild)
    assert len(builder.calls) == 2 and build.stamps_current(root)


def test_without_torch_a_stale_offline_default_is_served_with_a_warning(
    tmp_path: Path, tiny_mlm_model_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    Recorder(tiny_mlm_model_dir).build(tmp_path / "offline-default")
    (tmp_path / "offline-default" / "all-MiniLM-L6-v2.stamp.json").write_text("{}")
    monkeypatch.setattr(model_source, "_torch_missing", lambda: True)
    with caplog.at_level(logging.WARNING, logger="distilserve.model_source"):
        resolved = resolve_model_dirs([], DEFAULT, tmp_path, probe=_unreachable, build_default=lambda out: pytest.fail("built"))
    assert len(resolved) == 2 and "built from other weights" in caplog.text


def test_reachable_hub_exports_distilbert_once_then_serves_the_cache(tmp_path: Path, tiny_mlm_model_dir: Path) -> None:
    exporter = Recorder(tiny_mlm_model_dir)
    cache = tmp_path / "cache"
    (resolved,) = resolve_model_dirs([], DEFAULT, cache, probe=lambda: None, export=exporter.export, build_default=exporter.build)
    cached = cache / "exports" / "distilbert-base-uncased"
    assert exporter.calls == [("distilbert-base-uncased", cached)]
    assert resolved.path == cached and not resolved.demo and "hub is reachable" in resolved.reason

    (again,) = resolve_model_dirs([], DEFAULT, cache, probe=_must_not_probe, export=exporter.export)
    assert again.path == cached and "cached" in again.reason and len(exporter.calls) == 1


def test_local_distilbert_copy_is_exported_without_probing(tmp_path: Path, tiny_mlm_model_dir: Path,
                                                           tiny_mlm_checkpoint: Path) -> None:
    exporter = Recorder(tiny_mlm_model_dir)
    (resolved,) = resolve_model_dirs([], str(tiny_mlm_checkpoint), tmp_path / "cache", probe=_must_not_probe, export=exporter.export)
    assert exporter.calls == [(str(tiny_mlm_checkpoint), resolved.path)]
    assert resolved.path.parent == tmp_path / "cache" / "exports"
    assert "local checkpoint directory" in resolved.reason and not resolved.demo


def test_a_configured_source_that_cannot_be_had_is_an_error_not_the_demo(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match="only in place of distilbert-base-uncased"):
        resolve_model_dirs([], "someone/some-model", tmp_path, probe=_unreachable,
                           build_default=lambda out: pytest.fail("built the demo"))
    with pytest.raises(ModelSourceError, match="is not a directory"):
        resolve_model_dirs([], str(tmp_path / "missing"), tmp_path, probe=_must_not_probe)


def test_without_torch_the_error_says_how_to_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_source, "_torch_missing", lambda: True)
    with pytest.raises(ModelSourceError, match=r"make default-model.*--model-dir"):
        resolve_model_dirs([], DEFAULT, tmp_path, probe=_unreachable, build_default=lambda out: pytest.fail("built"))


def test_a_failed_export_is_reported_with_its_cause(tmp_path: Path, tiny_mlm_checkpoint: Path) -> None:
    def broken(source: str, out: Path) -> None:
        raise RuntimeError("disk full")

    with pytest.raises(ModelSourceError, match="failed: disk full"):
        resolve_model_dirs([], str(tiny_mlm_checkpoint), tmp_path, export=broken)


def test_hf_hub_offline_is_honoured_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(model_source.urllib.request, "urlopen", lambda *a, **k: pytest.fail("network used"))
    assert probe_hub() == "HF_HUB_OFFLINE=1"


def test_probe_reports_an_unreachable_endpoint_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: refused at once
    reason = probe_hub(timeout=1.0)
    assert reason is not None and reason.startswith("http://127.0.0.1:9 unreachable")


def test_source_slugs(tmp_path: Path) -> None:
    assert source_slug("distilbert-base-uncased") == "distilbert-base-uncased"
    assert source_slug("sentence-transformers/all-MiniLM-L6-v2") == "sentence-transformers--all-MiniLM-L6-v2"
    first, second = tmp_path / "a" / "ckpt", tmp_path / "b" / "ckpt"
    first.mkdir(parents=True)
    second.mkdir(parents=True)
    assert source_slug(str(first)).startswith("local-ckpt-") and source_slug(str(first)) != source_slug(str(second))


def test_a_failed_distilbert_export_falls_back_to_the_demo_and_says_so(tmp_path: Path, tiny_mlm_model_dir: Path) -> None:
    def broken(source: str, out: Path) -> None:
        raise RuntimeError("connection reset")

    builder = Recorder(tiny_mlm_model_dir)
    resolved = resolve_model_dirs([], DEFAULT, tmp_path, probe=lambda: None, export=broken, build_default=builder.build)
    assert [r.demo for r in resolved] == [True, False]
    assert resolved[0].path == tmp_path / "offline-default" / "fill-mask-demo"
    for model in resolved:
        assert "exporting distilbert-base-uncased" in model.reason and "connection reset" in model.reason


# Run in a fresh interpreter, so that what this test process has imported does not count. Logging at
# INFO as the server configures it, to see whether third-party INFO lines from the build come through.
RESOLVE_AND_LIST_IMPORTS = """
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
from app.model_source import resolve_model_dirs
(model,) = resolve_model_dirs([], sys.argv[1], sys.argv[2])
print(model.path)
print(",".join(name for name in ("torch", "transformers") if name in sys.modules))
"""


def test_an_export_into_an_empty_cache_runs_in_a_child_and_leaves_this_process_without_torch(
    tmp_path: Path, tiny_mlm_checkpoint: Path, repo_root: Path
) -> None:
    cache = tmp_path / "cache"
    result = subprocess.run(
        [sys.executable, "-c", RESOLVE_AND_LIST_IMPORTS, str(tiny_mlm_checkpoint), str(cache)],
        cwd=repo_root, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    served, loaded = result.stdout.splitlines()
    assert Path(served).parent == cache / "exports" and m.verify_model_dir(Path(served))
    assert loaded == "", f"the serving process imported {loaded} to export the model"
    assert "[export] fusing" in result.stderr, "the export's progress lines must stay visible"
    third_party = [line for line in result.stderr.splitlines() if re.match(r"INFO (?!distilserve)", line)]
    assert third_party == [], "third-party INFO lines from the export:\n" + "\n".join(third_party[:5])


def test_a_real_export_that_fails_is_the_exporters_one_line_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "gpt2"
    source.mkdir()
    (source / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(ModelSourceError) as refused, caplog.at_level(logging.INFO, logger="distilserve"):
        resolve_model_dirs([], str(source), tmp_path / "cache")
    message = str(refused.value)
    assert message.startswith(f"exporting {source} into ") and "gpt2" in message and "not supported" in message
    assert "\n" not in message and "error: " not in message and "Traceback" not in caplog.text
    assert "[export] loading" in caplog.text, "the child's progress lines are logged"


def test_a_child_that_crashes_is_refused_in_one_line_with_the_last_line_of_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    crash = "print('[export] starting', flush=True); raise RuntimeError('disk on fire')"
    with pytest.raises(ModelSourceError) as refused, caplog.at_level(logging.DEBUG, logger="distilserve"):
        model_source.run_build_child(["-c", crash])
    assert str(refused.value) == "RuntimeError: disk on fire"
    shown = [record.getMessage() for record in caplog.records if record.levelno >= logging.INFO]
    assert shown == ["[export] starting"], "the traceback goes to the debug log, not the operator's screen"
