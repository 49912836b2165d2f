"""One settings object: env vars with the DISTILSERVE_ prefix, flags that win, docs generated from it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from app.__main__ import build_parser, settings_from_args
from app.settings import Settings, settings_markdown

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_every_field_has_a_description() -> None:
    missing = [name for name, field in Settings.model_fields.items() if not field.description]
    assert missing == []
    for name in ("model_dir", "model_source", "cache_dir", "api_key"):  # fields colleagues rely on
        assert name in Settings.model_fields


def test_env_vars_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTILSERVE_MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("DISTILSERVE_PROVIDERS", "tensorrt, cuda,cpu")
    monkeypatch.setenv("DISTILSERVE_API_KEY", "k")
    monkeypatch.setenv("DISTILSERVE_PORT", "9000")
    args = build_parser().parse_args(["--port", "9100", "--strict-providers", "--model-dir", "/models/x"])
    settings = settings_from_args(args)
    assert settings.max_batch_size == 7
    assert settings.providers == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "k"
    assert settings.port == 9100  # the flag wins over the env var
    assert settings.strict_providers is True and settings.model_dir == [Path("/models/x")]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"providers": "cuda,rocm"}, "unknown provider"),
        ({"max_inputs_per_request": 10, "max_queue": 5}, "max_inputs_per_request"),
        ({"max_input_length": 600, "max_batch_tokens": 512}, "max_input_length"),
        ({"variant": "bf16"}, "variant"),
    ],
)
def test_inconsistent_settings_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**overrides)  # type: ignore[arg-type]


def test_help_lists_every_setting_with_its_description() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app", "--help"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60
    )
    assert result.returncode == 0
    flat = " ".join(result.stdout.split())
    for name, field in Settings.model_fields.items():
        assert "--" + name.replace("_", "-") in flat, name
        assert "DISTILSERVE_" + name.upper() in flat, name
        assert " ".join((field.description or "").split())[:40] in flat, name


def test_settings_markdown_is_the_readme_table() -> None:
    table = settings_markdown()
    rows = [line for line in table.splitlines() if line.startswith("| `DISTILSERVE_")]
    assert len(rows) == len(Settings.model_fields)
    assert "| `DISTILSERVE_PROVIDERS` | `--providers` | (unset) |" in table


def test_the_shutdown_timeout_ends_before_kubernetes_kills_the_pod() -> None:
    """SIGTERM comes after the preStop pause; the batcher's drain and the exit need a few seconds more."""
    deployment = yaml.safe_load((REPO_ROOT / "deploy" / "k8s" / "base" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain_and_exit_s = 5
    assert Settings().graceful_shutdown_timeout_s + drain_and_exit_s <= pod["terminationGracePeriodSeconds"] - pre_stop
