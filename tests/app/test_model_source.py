"""Default model resolution (app.model_source): which directory is served, and the reason given.

Exports and the offline build are replaced by copies of the tiny exported model, so these tests
check the decisions, not the (separately tested) exporter.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from app import model_source
from app.model_source import ModelSourceError, ResolvedModel, probe_hub, resolve_model_dir, source_slug
from model_export import manifest as m


def _settings(tmp_path: Path, **fields: object) -> SimpleNamespace:
    values = {"model_dir": None, "model_source": "distilbert-base-uncased", "cache_dir": tmp_path / "cache"}
    values.update(fields)
    return SimpleNamespace(**values)


class Recorder:
    """Stands in for export / build: copies the tiny exported model and records the call."""

    def __init__(self, model_dir: Path, demo: bool = False) -> None:
        self.model_dir, self.demo, self.calls = model_dir, demo, []

    def export(self, source: str, out: Path) -> None:
        self.calls.append((source, out))
        shutil.copytree(self.model_dir, out)
        if self.demo:
            manifest = m.read_manifest(out)
            m.write_manifest(out, manifest.model_copy(update={"demo": True}))

    def build(self, out: Path) -> None:
        self.export("offline-default", out)


def _unreachable() -> str:
    return "https://huggingface.co unreachable (test)"


def _must_not_probe() -> str:
    raise AssertionError("the hub was probed although the answer was already known")


def test_explicit_model_dir_wins(tmp_path: Path, tiny_mlm_model_dir: Path) -> None:
    resolved = resolve_model_dir(_settings(tmp_path, model_dir=tiny_mlm_model_dir), probe=_must_not_probe)
    assert resolved == ResolvedModel(tiny_mlm_model_dir, f"model_dir {tiny_mlm_model_dir} is configured", False)


def test_offline_picks_the_demo_default_and_says_why(
    tmp_path: Path, tiny_mlm_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    builder = Recorder(tiny_mlm_model_dir, demo=True)
    settings = _settings(tmp_path)
    with caplog.at_level(logging.INFO, logger="distilserve.model_source"):
        resolved = resolve_model_dir(settings, probe=_unreachable, export=builder.export, build_default=builder.build)
    offline = tmp_path / "cache" / "offline-default"
    assert resolved.path == offline and resolved.demo
    assert builder.calls == [("offline-default", offline)]
    assert "offline demo default" in resolved.reason
    assert "distilbert-base-uncased is not cached and the hub is unreachable (https://huggingface.co unreachable (test))" in resolved.reason
    assert "DISTILSERVE_MODEL_SOURCE" in resolved.reason
    assert resolved.reason in caplog.text

    again = resolve_model_dir(settings, probe=_unreachable, export=builder.export, build_default=builder.build)
    assert again == resolved and len(builder.calls) == 1, "the offline default is built once"


def test_reachable_hub_exports_distilbert_once_then_serves_the_cache(tmp_path: Path, tiny_mlm_model_dir: Path) -> None:
    exporter = Recorder(tiny_mlm_model_dir)
    settings = _settings(tmp_path)
    resolved = resolve_model_dir(settings, probe=lambda: None, export=exporter.export, build_default=exporter.build)
    cached = tmp_path / "cache" / "exports" / "distilbert-base-uncased"
    assert exporter.calls == [("distilbert-base-uncased", cached)]
    assert resolved.path == cached and not resolved.demo and "hub is reachable" in resolved.reason

    again = resolve_model_dir(settings, probe=_must_not_probe, export=exporter.export)
    assert again.path == cached and "cached" in again.reason and len(exporter.calls) == 1


def test_local_distilbert_copy_is_exported_without_probing(tmp_path: Path, tiny_mlm_model_dir: Path,
                                                           tiny_mlm_checkpoint: Path) -> None:
    exporter = Recorder(tiny_mlm_model_dir)
    settings = _settings(tmp_path, model_source=str(tiny_mlm_checkpoint))
    resolved = resolve_model_dir(settings, probe=_must_not_probe, export=exporter.export)
    assert exporter.calls == [(str(tiny_mlm_checkpoint), resolved.path)]
    assert resolved.path.parent == tmp_path / "cache" / "exports"
    assert "local checkpoint directory" in resolved.reason and not resolved.demo


def test_a_configured_source_that_cannot_be_had_is_an_error_not_the_demo(tmp_path: Path) -> None:
    settings = _settings(tmp_path, model_source="someone/some-model")
    with pytest.raises(ModelSourceError, match="only in place of distilbert-base-uncased"):
        resolve_model_dir(settings, probe=_unreachable, build_default=lambda out: pytest.fail("built the demo"))
    with pytest.raises(ModelSourceError, match="is not a directory"):
        resolve_model_dir(_settings(tmp_path, model_source=str(tmp_path / "missing")), probe=_must_not_probe)


def test_without_torch_the_error_says_how_to_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_source, "_torch_missing", lambda: True)
    with pytest.raises(ModelSourceError, match=r"make default-model.*--model-dir"):
        resolve_model_dir(_settings(tmp_path), probe=_unreachable, build_default=lambda out: pytest.fail("built"))


def test_a_failed_export_is_reported_with_its_cause(tmp_path: Path, tiny_mlm_checkpoint: Path) -> None:
    def broken(source: str, out: Path) -> None:
        raise RuntimeError("disk full")

    with pytest.raises(ModelSourceError, match="failed: disk full"):
        resolve_model_dir(_settings(tmp_path, model_source=str(tiny_mlm_checkpoint)), export=broken)


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

    builder = Recorder(tiny_mlm_model_dir, demo=True)
    resolved = resolve_model_dir(_settings(tmp_path), probe=lambda: None, export=broken, build_default=builder.build)
    assert resolved.demo and resolved.path == tmp_path / "cache" / "offline-default"
    assert "exporting distilbert-base-uncased" in resolved.reason and "connection reset" in resolved.reason
