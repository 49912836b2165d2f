"""OnnxBackend on real exported graphs: the load gate, and the check of a graph against its manifest."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from app.backend import OnnxBackend, TokenBatch, TokenItem, Wants, check_graph, pad, split_outputs
from app.model_config import ModelOptions
from app.providers import ShapeLimits
from app.settings import Settings
from model_export.manifest import (
    LOGITS,
    MANIFEST_FILE,
    TOKEN_TYPE_IDS,
    Manifest,
    ManifestError,
    SpecialToken,
    read_manifest,
    sha256_file,
)


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


# Classifier graphs: logits instead of an embedding, and token_type_ids for BERT's sentence pairs.
PAIR = [101, 1037, 2158, 102, 2619, 102]  # [CLS] a man [SEP] someone [SEP]
PAIR_TYPES = [0, 0, 0, 0, 1, 1]


def classifier_backend(model_dir: Path) -> OnnxBackend:
    settings = Settings(model_dir=model_dir, providers=["cpu"], intra_op_threads=1)
    return OnnxBackend(model_dir, read_manifest(model_dir), settings, ShapeLimits(4, 512, 128), settings.trt_cache_path)


def test_pairs_reach_a_bert_graph_with_their_token_types(tiny_classifier_dir: Callable[..., Path]) -> None:
    model_dir = tiny_classifier_dir("topics", "bert")
    backend = classifier_backend(model_dir)
    session = _session(model_dir)
    assert TOKEN_TYPE_IDS in [node.name for node in session.get_inputs()]
    wants = Wants(embedding=False)
    batch = TokenBatch.of([TokenItem(np.array([101, 2158, 102]), wants), TokenItem(np.array(PAIR), wants, np.array(PAIR_TYPES))])
    outputs = backend.run(batch)
    assert [output.embedding for output in outputs] == [None, None]
    expected = session.run([LOGITS], pad(batch, 0).feeds([node.name for node in session.get_inputs()]))[0]
    np.testing.assert_allclose(np.stack([output.logits for output in outputs]), expected, atol=1e-6)  # type: ignore[misc]
    # Segment B matters to BERT: the same ids read as one segment score differently.
    one_segment = backend.run(TokenBatch.of([TokenItem(np.array(PAIR), wants)]))[0].logits
    assert not np.allclose(one_segment, outputs[1].logits, atol=1e-4)  # type: ignore[arg-type]


def test_per_token_logits_are_cut_to_each_items_length(tiny_classifier_dir: Callable[..., Path]) -> None:
    backend = classifier_backend(tiny_classifier_dir("ner"))
    wants = Wants(embedding=False)
    short, long = np.array([101, 2158, 102]), np.array(PAIR)
    together = backend.run(TokenBatch.of([TokenItem(short, wants), TokenItem(long, wants)]))
    assert [output.logits.shape for output in together] == [(3, 7), (6, 7)]  # type: ignore[union-attr]
    alone = backend.run(TokenBatch.of([TokenItem(short, wants)]))[0]
    np.testing.assert_allclose(together[0].logits, alone.logits, atol=1e-5)  # type: ignore[arg-type]


def test_a_classifier_graph_without_logits_is_refused(
    tiny_classifier_dir: Callable[..., Path], encoder: tuple[Any, Manifest]
) -> None:
    classifier = read_manifest(tiny_classifier_dir("sentiment"))
    session, _ = encoder  # an embedding graph: sentence_embedding, no logits
    with pytest.raises(ManifestError, match="describes a classifier, but the graph has no logits output"):
        check_graph(session, classifier, 128)


def test_a_label_count_the_graph_does_not_have_is_named(tiny_classifier_dir: Callable[..., Path]) -> None:
    model_dir = tiny_classifier_dir("ner")
    manifest = read_manifest(model_dir)
    assert manifest.classifier is not None
    wrong = manifest.model_copy(update={"classifier": manifest.classifier.model_copy(update={"num_labels": 9})})
    with pytest.raises(ManifestError, match=r"logits has shape \[1, 3, 7\] for a 3-token input, expected \[1, 3, 9\]"):
        check_graph(_session(model_dir), wrong, 128)


def test_split_outputs_without_an_embedding_keeps_logits_per_item() -> None:
    logits = np.arange(6, dtype=np.float32).reshape(2, 3)
    items = split_outputs(None, None, None, logits, np.array([4, 2]))
    assert [item.embedding for item in items] == [None, None]
    np.testing.assert_array_equal(items[1].logits, logits[1])  # type: ignore[arg-type]


def test_io_binding_feeds_token_types_too(tiny_classifier_dir: Callable[..., Path]) -> None:
    """The CUDA IO-binding path, on CPU memory, for a BERT classifier: the same logits as a plain run."""
    backend = classifier_backend(tiny_classifier_dir("reranker", "bert"))
    wants = Wants(embedding=False)
    batch = TokenBatch.of([TokenItem(np.array(PAIR), wants, np.array(PAIR_TYPES)), TokenItem(np.array([101, 2158, 102]), wants)])
    plain = backend.run(batch)
    bound = backend._run_bound(pad(batch, 0), "cpu")
    np.testing.assert_allclose(bound[LOGITS], np.stack([output.logits for output in plain]), atol=1e-6)  # type: ignore[misc]
