"""OnnxBackend on real exported graphs: the load gate, and the check of a graph against its manifest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import onnxruntime as ort
import pytest

from app.backend import OnnxBackend, check_graph
from app.model_config import ModelOptions
from app.providers import ShapeLimits
from model_export.manifest import MANIFEST_FILE, Manifest, ManifestError, SpecialToken, read_manifest, sha256_file


def _session(model_dir: Path) -> Any:
    return ort.InferenceSession(str(model_dir / "model.fp32.onnx"), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def mlm(tiny_mlm_model_dir: Path) -> tuple[Any, Manifest]:
    return _session(tiny_mlm_model_dir), read_manifest(tiny_mlm_model_dir)


@pytest.fixture(scope="module")
def encoder(tiny_encoder_model_dir: Path) -> tuple[Any, Manifest]:
    return _session(tiny_encoder_model_dir), read_manifest(tiny_encoder_model_dir)


class SymbolicShapes:
    """A session whose outputs declare no fixed dimensions, as some exporters write them."""

    def __init__(self, session: Any) -> None:
        self._session = session

    def get_inputs(self) -> Any:
        return self._session.get_inputs()

    def get_outputs(self) -> Any:
        return [
            SimpleNamespace(name=output.name, type=output.type, shape=[f"dim{index}" for index in range(len(output.shape))])
            for output in self._session.get_outputs()
        ]

    def run(self, *args: Any, **kwargs: Any) -> Any:
        return self._session.run(*args, **kwargs)


def _with_arch(manifest: Manifest, **changes: object) -> Manifest:
    return manifest.model_copy(update={"arch": manifest.arch.model_copy(update=changes)})


def test_graphs_their_manifests_describe_pass(mlm: tuple[Any, Manifest], encoder: tuple[Any, Manifest]) -> None:
    for session, manifest in (mlm, encoder):
        check_graph(session, manifest, manifest.max_length)


@pytest.mark.parametrize("shapes", ["static", "symbolic"])
def test_a_hidden_size_the_graph_does_not_have_is_named(mlm: tuple[Any, Manifest], shapes: str) -> None:
    session, manifest = mlm
    session = session if shapes == "static" else SymbolicShapes(session)
    with pytest.raises(ManifestError, match="sentence_embedding is 32 wide, the manifest's arch.hidden_size is 64"):
        check_graph(session, _with_arch(manifest, hidden_size=64), manifest.max_length)


def test_a_vocabulary_the_graph_does_not_have_is_named(mlm: tuple[Any, Manifest]) -> None:
    session, manifest = mlm
    with pytest.raises(ManifestError, match="mask_logits has 30522 columns, the manifest's arch.vocab_size is 30000"):
        check_graph(session, _with_arch(manifest, vocab_size=30000), manifest.max_length)


def test_fill_mask_needs_the_mask_outputs(encoder: tuple[Any, Manifest]) -> None:
    session, manifest = encoder
    assert manifest.special_tokens.mask is not None
    listed = manifest.model_copy(update={"tasks": ["embed", "fill-mask"]})
    with pytest.raises(ManifestError, match="tasks list fill-mask, but the graph has no mask_logits, mask_positions"):
        check_graph(session, listed, manifest.max_length)


def test_mask_outputs_need_fill_mask_listed(mlm: tuple[Any, Manifest]) -> None:
    session, manifest = mlm
    with pytest.raises(ManifestError, match="the graph has mask outputs, but the manifest's tasks do not list fill-mask"):
        check_graph(session, manifest.model_copy(update={"tasks": ["embed"]}), manifest.max_length)


def test_a_mask_id_the_graph_does_not_mark_is_named(mlm: tuple[Any, Manifest]) -> None:
    session, manifest = mlm
    tokens = manifest.special_tokens.model_copy(update={"mask": SpecialToken(id=104, token="[MASK]")})
    with pytest.raises(ManifestError, match="no mask_logits row for the manifest's mask token id 104"):
        check_graph(session, manifest.model_copy(update={"special_tokens": tokens}), manifest.max_length)


def test_a_max_length_beyond_the_graphs_positions_is_named(mlm: tuple[Any, Manifest]) -> None:
    session, manifest = mlm
    assert manifest.max_length == 128  # the tiny checkpoint's position table
    check_graph(session, manifest, 128)
    with pytest.raises(ManifestError, match="the graph cannot run an input of max_length 129 tokens"):
        check_graph(session, manifest, 129)


def test_other_input_names_are_named(mlm: tuple[Any, Manifest]) -> None:
    session, manifest = mlm
    renamed = SimpleNamespace(
        get_inputs=lambda: [SimpleNamespace(name="ids", type="tensor(int64)", shape=["batch", "sequence"])],
        get_outputs=session.get_outputs,
        run=session.run,
    )
    with pytest.raises(ManifestError, match=r"the graph's inputs are \['ids'\], expected \['attention_mask', 'input_ids'\]"):
        check_graph(renamed, manifest, manifest.max_length)


def test_a_corrupted_graph_with_an_updated_checksum_is_a_one_line_refusal(tiny_mlm_model_dir: Path, tmp_path: Path) -> None:
    directory = Path(shutil.copytree(tiny_mlm_model_dir, tmp_path / "model"))
    graph = directory / "model.fp32.onnx"
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])
    raw = json.loads((directory / MANIFEST_FILE).read_text())
    raw["variants"]["fp32"]["sha256"] = sha256_file(graph)
    (directory / MANIFEST_FILE).write_text(json.dumps(raw))
    manifest = read_manifest(directory)
    options = ModelOptions(providers=["cpu"], intra_op_threads=1)
    with pytest.raises(ManifestError, match="onnxruntime cannot load model.fp32.onnx: .*Protobuf parsing failed") as refused:
        OnnxBackend(directory, manifest, options, ShapeLimits(8, 256, manifest.max_length), tmp_path / "trt")
    assert "\n" not in str(refused.value)
