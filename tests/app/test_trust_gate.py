"""The start-up trust gate reads each file it vouches for once: the tokenizer when the manifest is
checked, the variant's graph when the backend loads it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from app.server import create_app
from app.settings import Settings
from model_export import manifest as manifest_module


def test_start_up_hashes_the_tokenizer_and_the_loaded_variant_once_each(
    tiny_mlm_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed: Counter[str] = Counter()
    real_sha256_file = manifest_module.sha256_file

    def counting_sha256_file(path: Path) -> str:
        hashed[Path(path).name] += 1
        return real_sha256_file(path)

    monkeypatch.setattr(manifest_module, "sha256_file", counting_sha256_file)
    settings = Settings(model_dir=[tiny_mlm_model_dir], providers=["cpu"], variant="fp32", intra_op_threads=1)
    create_app(settings)
    manifest = manifest_module.read_manifest(tiny_mlm_model_dir)
    assert hashed == Counter({manifest.tokenizer_file: 1, manifest.variant("fp32").file: 1})
