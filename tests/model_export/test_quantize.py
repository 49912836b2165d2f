"""The int8 quantizer's parts: the exclusion search on a fake scorer, and outlier smoothing on a tiny graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from model_export.quantize import input_channel_ranges, search_exclusions, smooth_outlier_channels

NODES = ("a", "b", "c", "d")


def additive_search(errors: dict[str, float], allowed: float, max_exclusions: int = 4):
    """A fake model whose shortfall is the sum of its quantized nodes' errors; it passes within `allowed`."""
    calls: list[tuple[str, ...]] = []

    def evaluate(excluded: tuple[str, ...]) -> float:
        calls.append(excluded)
        return sum(error for name, error in errors.items() if name not in excluded)

    result = search_exclusions(list(errors), evaluate, lambda shortfall: shortfall <= allowed, lambda shortfall: shortfall, max_exclusions)
    return result, calls


def test_nothing_is_excluded_when_everything_quantized_passes() -> None:
    result, calls = additive_search(dict.fromkeys(NODES, 0.001), allowed=0.01)
    assert (result.excluded, result.passed, result.evaluations) == ((), True, 1)
    assert calls == [()]


def test_the_worst_nodes_by_measured_effect_are_excluded_first_and_no_more() -> None:
    result, calls = additive_search({"a": 0.001, "b": 0.02, "c": 0.005, "d": 0.01}, allowed=0.012)
    assert result.passed and result.excluded == ("b", "d")
    # each node's effect is measured with only that node quantized
    assert calls[1:5] == [("b", "c", "d"), ("a", "c", "d"), ("a", "b", "d"), ("a", "b", "c")]
    assert result.effects == {"a": 0.001, "b": 0.02, "c": 0.005, "d": 0.01}
    assert result.evaluations == len(calls)


def test_an_exclusion_the_later_ones_made_unnecessary_is_quantized_again() -> None:
    """Alone, a hurts most; but the gate turns on b (an interaction), so a goes back to int8."""
    errors = {"a": 0.03, "b": 0.02, "c": 0.001}
    calls: list[tuple[str, ...]] = []

    def evaluate(excluded: tuple[str, ...]) -> tuple[str, ...]:
        calls.append(excluded)
        return excluded

    result = search_exclusions(
        list(errors), evaluate, lambda excluded: "b" in excluded, lambda excluded: sum(e for n, e in errors.items() if n not in excluded), 3
    )
    assert result.passed and result.excluded == ("b",)
    assert calls[-3:] == [("a",), ("a", "b"), ("b",)]


def test_the_search_is_bounded_and_says_when_it_failed() -> None:
    result, calls = additive_search(dict.fromkeys(NODES, 0.1), allowed=0.0, max_exclusions=2)
    assert not result.passed
    assert result.excluded == ("a", "b")  # equal effects: graph order
    assert result.evaluations == len(calls) == 1 + len(NODES) + 2


def _matmul_model(weight: np.ndarray) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="product")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", weight.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", weight.shape[1]])],
        [numpy_helper.from_array(weight, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_smoothing_divides_outlier_channels_down_and_leaves_the_result_unchanged() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 8)).astype(np.float32)
    x[:, 3] *= 40  # one outlier channel, as after a BERT LayerNorm
    model = _matmul_model(rng.normal(size=(8, 4)).astype(np.float32))
    expected = _run(model, x)
    ranges = input_channel_ranges(model, [{"x": x}])
    assert smooth_outlier_channels(model, ranges, factor=3.0) == 1
    assert [node.op_type for node in model.graph.node] == ["Mul", "MatMul"]
    np.testing.assert_allclose(_run(model, x), expected, rtol=1e-5, atol=1e-4)
    smoothed_input = model.graph.node[0].output[0]
    smoothed_ranges = input_channel_ranges(model, [{"x": x}])[smoothed_input]
    assert smoothed_ranges.max() <= 3.0 * np.median(ranges["x"]) * 1.0001
    assert np.array_equal(smoothed_ranges[[0, 1, 2, 4, 5, 6, 7]], ranges["x"][[0, 1, 2, 4, 5, 6, 7]])


def test_a_graph_without_outliers_is_not_touched() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(16, 8)).astype(np.float32)
    model = _matmul_model(rng.normal(size=(8, 4)).astype(np.float32))
    before = model.SerializeToString()
    assert smooth_outlier_channels(model, input_channel_ranges(model, [{"x": x}]), factor=3.0) == 0
    assert model.SerializeToString() == before


@pytest.mark.parametrize("factor", [0.5, 3.0])
def test_smoothing_never_scales_a_channel_up(factor: float) -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(16, 8)).astype(np.float32)
    x[:, 0] *= 50
    model = _matmul_model(rng.normal(size=(8, 4)).astype(np.float32))
    smooth_outlier_channels(model, input_channel_ranges(model, [{"x": x}]), factor=factor)
    inverse = next(numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("inverse_scale"))
    assert (inverse <= 1.0).all()


def test_the_export_records_the_searched_exclusions_in_the_manifest(
    tiny_checkpoints, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the search keeps in float32 is what the int8 file computes in float, and the manifest says so."""
    from model_export import quantize
    from model_export.manifest import verify_model_dir
    from model_export.pipeline import ExportOptions, export_model

    chosen: list[str] = []

    def keep_the_first_product(candidates, evaluate, passes, shortfall, max_exclusions):
        chosen.append(candidates[0])
        assert passes(evaluate((candidates[0],)))
        return quantize.ExclusionSearch((candidates[0],), True, 1)

    monkeypatch.setattr(quantize, "search_exclusions", keep_the_first_product)
    out = tmp_path / "model"
    manifest = export_model(str(tiny_checkpoints["bert-encoder"]), out, ExportOptions(variants=("fp32", "int8")), progress=lambda _: None)
    receipt = manifest.variants["int8"].int8
    assert receipt is not None and receipt.excluded_nodes == chosen
    assert verify_model_dir(out).variants["int8"].int8 == receipt
    graph = onnx.load(str(out / "model.int8.onnx")).graph
    float_products = [node.name for node in graph.node if node.op_type in ("MatMul", "Attention")]
    integer_products = [node for node in graph.node if node.op_type in ("MatMulInteger", "QAttention", "DynamicQuantizeMatMul")]
    assert chosen[0] in float_products
    assert len(integer_products) == receipt.quantized_nodes == len(quantize.quantizable_nodes(onnx.load(str(out / "model.fp32.onnx")))) - 1


def test_an_int8_that_cannot_pass_is_left_out_and_the_manifest_says_why(
    tiny_checkpoints, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from model_export import parity
    from model_export.pipeline import ExportOptions, export_model

    monkeypatch.setitem(parity.GATES, "int8", parity.Gate(min_cosine=1.5))
    manifest = export_model(str(tiny_checkpoints["bert-encoder"]), tmp_path / "model", ExportOptions(variants=("fp32", "int8")), progress=lambda _: None)
    assert set(manifest.variants) == {"fp32"}
    assert any(note.startswith("int8 missed its gate (embedding cosine") and "not written" in note for note in manifest.notes)


class _BatchSensitiveSession:
    """Embeds a sentence as (token sum, length, 1), except alone, where its first figure comes out 10% high:
    a stand-in for dynamic int8, whose activation scales follow the run's company."""

    def get_outputs(self):
        from types import SimpleNamespace

        return [SimpleNamespace(name="sentence_embedding")]

    def run(self, names, feed):
        ids, mask = feed["input_ids"], feed["attention_mask"]
        embeddings = np.stack([(ids * mask).sum(axis=1), mask.sum(axis=1), np.ones(len(ids))], axis=1).astype(np.float32)
        if len(ids) == 1:
            embeddings[:, 0] *= 1.1
        return [embeddings]


def test_a_gate_over_every_batching_reports_the_worst_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from model_export import parity

    ids = np.array([[5, 9, 7, 0], [3, 0, 0, 0], [8, 8, 0, 0]])
    mask = (ids > 0).astype(np.int64)
    reference = parity.Reference(input_ids=ids, attention_mask=mask, embeddings=_BatchSensitiveSession().run([], {"input_ids": ids, "attention_mask": mask})[0])
    monkeypatch.setattr(parity, "validation_session", lambda path, providers: _BatchSensitiveSession())
    padded_only = parity.measure(Path("fake.onnx"), reference, parity.Gate(min_cosine=0.99))
    every = parity.measure(Path("fake.onnx"), reference, parity.Gate(min_cosine=0.99, every_batching=True))
    assert padded_only.embedding_min_cosine == pytest.approx(1.0)
    assert every.embedding_min_cosine < 0.9999
    assert "length-sorted batches of" in every.gate and "length-sorted" not in padded_only.gate


def test_regrouped_batches_give_the_padded_batch_answers_back_in_its_order(tiny_exports) -> None:
    """fp32 does not care how it is batched, so any mix-up of rows or mask positions would show."""
    from tokenizers import Tokenizer

    from model_export import parity

    model_dir = tiny_exports["distilbert-mlm"]
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_padding()
    texts = parity.validation_sentences("[MASK]")
    encodings = tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    session = parity.validation_session(model_dir / "model.fp32.onnx")
    embeddings, logits, positions = session.run(None, {"input_ids": ids, "attention_mask": mask})
    reference = parity.Reference(input_ids=ids, attention_mask=mask, embeddings=embeddings, mask_positions=positions, mask_logits=logits)
    for batch_size in (1, 3):
        regrouped_embeddings, regrouped_logits = parity.run_regrouped(session, reference, batch_size)
        np.testing.assert_allclose(regrouped_embeddings, embeddings, atol=1e-4)
        np.testing.assert_allclose(regrouped_logits, logits, atol=1e-3)
