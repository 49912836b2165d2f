"""int8 for the CPU: outlier smoothing, dynamic per-channel quantization, and a measured search for the
few nodes to keep in float32.

What all-MiniLM-L6-v2 taught us (worst cosine against fp32 on the validation sentences, this machine):
- dynamic int8, per-channel weights, every matrix product: 0.980 (0.979 with reduce_range). Each
  activation tensor gets one scale per run, and a handful of hidden channels (the well-known BERT
  outlier dimensions: 20x the median channel after LayerNorm and GELU) spend most of its 256 levels;
- static QDQ (MinMax calibration on real sentences, per-channel weights, reduce_range) on the
  feed-forward and output products: 0.797, and slower than dynamic (one scale fixed for every input);
- excluding nodes alone, ranked by their measured effect: the gate needed 9 of 24 kept in fp32,
  most of the feed-forward products, which gives back most of the speed;
- smoothing first (SmoothQuant's migration, applied to the outlier channels only): the few input
  channels whose calibrated range exceeds OUTLIER_FACTOR x the median channel's are divided down to
  it by a Mul in front of the product, and the matching weight rows multiplied up, which is exact in
  float: 0.986 with everything quantized, and the search then keeps 2 of 24 products in fp32
  (the gate holding in every batching it measures; 1 when it measured the padded batch alone).
  (Full SmoothQuant, every channel balanced against its weights at alpha 0.5, made it worse: 0.963.)

`reduce_range` keeps weights to 7 bits: without VNNI, x86 multiplies u8 x s8 pairs into saturating
int16 sums, and full-range weights overflow them, so an int8 file built here must be one every AVX2
machine computes correctly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import onnx
from onnx import helper, numpy_helper

from model_export.manifest import Int8Receipt, Parity

if TYPE_CHECKING:
    from model_export.parity import Gate, Reference

# The operators whose integer kernels make int8 faster: the matrix products, fused attention included.
QUANTIZED_OPS = ("MatMul", "Attention")
# A channel is an outlier when its calibrated max |x| exceeds this many times the median channel's.
OUTLIER_FACTOR = 3.0
# Past a third of the products kept in float32 the int8 file is barely faster than fp32 (attention-only
# int8 measured 1.2x), so the search stops there and the export reports the miss instead.
MAX_EXCLUDED_SHARE = 1 / 3
METHOD = (
    "dynamic int8: per-channel int8 weights (reduce_range), uint8 activations scaled per run; "
    f"input channels above {OUTLIER_FACTOR:g}x the median range migrated into the weights first"
)

Feed = Mapping[str, np.ndarray]
Outcome = TypeVar("Outcome")


def quantizable_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the products the quantizer turns into integer ops: those whose weight is an initializer."""
    weights = {initializer.name for initializer in model.graph.initializer}
    return [node.name for node in model.graph.node if node.op_type in QUANTIZED_OPS and node.input[1] in weights]


def input_channel_ranges(model: onnx.ModelProto, feeds: Sequence[Feed]) -> dict[str, np.ndarray]:
    """Per-channel max |x| of each quantizable node's activation input over `feeds`, by tensor name.

    One sentence per feed, so no padded position widens a range."""
    import onnxruntime as ort

    wanted = sorted({node.input[0] for node in _quantizable(model)})
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in wanted)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    ranges: dict[str, np.ndarray] = {}
    for feed in feeds:
        for name, value in zip(wanted, session.run(wanted, dict(feed)), strict=True):
            channel_max = np.abs(value).reshape(-1, value.shape[-1]).max(axis=0)
            ranges[name] = np.maximum(ranges[name], channel_max) if name in ranges else channel_max
    return ranges


def smooth_outlier_channels(model: onnx.ModelProto, ranges: Mapping[str, np.ndarray], factor: float = OUTLIER_FACTOR) -> int:
    """Divide each quantizable node's outlier input channels down to `factor` x the median range (a Mul
    in front of the node) and multiply the weight rows they meet by the same amount: the float result is
    unchanged, and the activation's one int8 scale no longer has to span the outliers. In place; returns
    how many nodes were smoothed. A weight shared by several nodes is left alone."""
    initializers = {initializer.name: initializer for initializer in model.graph.initializer}
    uses: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    quantizable = set(quantizable_nodes(model))
    rebuilt: list[onnx.NodeProto] = []
    smoothed = 0
    for node in model.graph.node:
        scale = _outlier_scale(ranges.get(node.input[0]), factor) if node.name in quantizable else None
        if scale is not None and uses[node.input[1]] == 1:
            weight = initializers[node.input[1]]
            values = numpy_helper.to_array(weight)
            weight.CopyFrom(numpy_helper.from_array((values * scale[:, None]).astype(values.dtype), weight.name))
            inverse = f"{node.name}/outlier_smoothing/inverse_scale"
            smoothed_input = f"{node.name}/outlier_smoothing/output"
            model.graph.initializer.append(numpy_helper.from_array((1.0 / scale).astype(np.float32), inverse))
            rebuilt.append(helper.make_node("Mul", [node.input[0], inverse], [smoothed_input], name=f"{node.name}/outlier_smoothing"))
            node.input[0] = smoothed_input
            smoothed += 1
        rebuilt.append(node)
    del model.graph.node[:]
    model.graph.node.extend(rebuilt)
    return smoothed


def _outlier_scale(channel_max: np.ndarray | None, factor: float) -> np.ndarray | None:
    """Per-channel divisors (1 for ordinary channels), or None when no channel stands out."""
    if channel_max is None:
        return None
    ceiling = factor * float(np.median(channel_max))
    if ceiling <= 0 or channel_max.max() <= ceiling:
        return None
    return np.maximum(channel_max / ceiling, 1.0).astype(np.float32)


def _quantizable(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    names = set(quantizable_nodes(model))
    return [node for node in model.graph.node if node.name in names]


def quantize_dynamic_int8(float_path: Path, out_path: Path, excluded: Sequence[str] = ()) -> None:
    """Dynamic int8 of every quantizable product but `excluded` (see the module docstring for why these options)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _root_logger_quiet():
        quantize_dynamic(
            float_path,
            out_path,
            op_types_to_quantize=list(QUANTIZED_OPS),
            per_channel=True,
            reduce_range=True,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=list(excluded),
            # The optimizer's fused ops carry no type info for some weights; without this the
            # quantizer stops with "Unable to find data type for weight_name".
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )


@contextmanager
def _root_logger_quiet() -> Iterator[None]:
    """The quantizer logs advisory warnings on the root logger (run pre-processing; it leaves the
    int64 NonZero output alone, rightly); parity validation is what judges the result."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


@dataclass(frozen=True)
class ExclusionSearch:
    """Which nodes to keep in float32, and how that was found."""

    excluded: tuple[str, ...]
    passed: bool
    evaluations: int
    effects: dict[str, float] = field(default_factory=dict)  # shortfall with only that node quantized


def search_exclusions(
    candidates: Sequence[str],
    evaluate: Callable[[tuple[str, ...]], Outcome],
    passes: Callable[[Outcome], bool],
    shortfall: Callable[[Outcome], float],
    max_exclusions: int,
) -> ExclusionSearch:
    """The fewest nodes to keep in float32, found by measurement, in at most
    1 + len(candidates) + 2 x max_exclusions evaluations (deterministic when `evaluate` is).

    Everything quantized first; if that misses, each node's effect is measured alone (only it
    quantized: its `shortfall`, 0 = perfect), and nodes are excluded worst first until the gate passes;
    then each exclusion but the last is tried back in, latest first, and stays quantized if the gate
    still holds (a node ranked high alone can matter less once its neighbours are float)."""
    evaluations = 1
    if passes(evaluate(())):
        return ExclusionSearch((), True, evaluations)
    effects: dict[str, float] = {}
    for name in candidates:
        effects[name] = shortfall(evaluate(tuple(other for other in candidates if other != name)))
        evaluations += 1
    order = sorted(candidates, key=lambda name: -effects[name])  # stable: graph order breaks ties
    excluded: list[str] = []
    for name in order[:max_exclusions]:
        excluded.append(name)
        evaluations += 1
        if passes(evaluate(tuple(excluded))):
            break
    else:
        return ExclusionSearch(tuple(excluded), False, evaluations, effects)
    for name in reversed(excluded[:-1]):
        trial = tuple(kept for kept in excluded if kept != name)
        evaluations += 1
        if passes(evaluate(trial)):
            excluded.remove(name)
    return ExclusionSearch(tuple(excluded), True, evaluations, effects)


def gate_shortfall(parity: Parity) -> float:
    """How far a variant is from matching PyTorch, 0 = exactly: what the search ranks nodes by."""
    if parity.argmax_agreement is not None:  # a classifier: decisions first, logits as the tie-break
        return (1.0 - parity.argmax_agreement) + 1e-3 * min(parity.logits_max_abs_diff or 0.0, 1.0)
    missed_top1 = 1.0 - parity.top1_agreement if parity.top1_agreement is not None else 0.0
    return (1.0 - parity.embedding_min_cosine) + missed_top1


@dataclass(frozen=True)
class Int8Build:
    parity: Parity
    receipt: Int8Receipt
    missed: list[str]  # the gate's failures in words; empty when it passed


def build_int8(
    fp32_path: Path, out_path: Path, reference: Reference, gate: Gate, feeds: Sequence[Feed], scratch: Path
) -> Int8Build:
    """Smooth the outlier channels, search the exclusions against `gate`, and write the int8 file at
    `out_path` (written even when the gate is missed, so the caller can report its figures)."""
    from model_export.parity import measure

    model = onnx.load(str(fp32_path))
    candidates = quantizable_nodes(model)
    smoothed = smooth_outlier_channels(model, input_channel_ranges(model, feeds))
    smoothed_path = scratch / "model.int8-smoothed.onnx"
    onnx.save(model, str(smoothed_path))

    def evaluate(excluded: tuple[str, ...]) -> Parity:
        quantize_dynamic_int8(smoothed_path, out_path, excluded)
        return measure(out_path, reference, gate)

    search = search_exclusions(
        candidates,
        evaluate,
        passes=lambda parity: not gate.failures(parity),
        shortfall=gate_shortfall,
        max_exclusions=int(len(candidates) * MAX_EXCLUDED_SHARE),
    )
    parity = evaluate(search.excluded)  # the file at out_path is the chosen one
    receipt = Int8Receipt(
        method=METHOD,
        calibration_sentences=len(feeds),
        smoothed_nodes=smoothed,
        quantized_nodes=len(candidates) - len(search.excluded),
        excluded_nodes=list(search.excluded),
        search_evaluations=search.evaluations + 1,
    )
    return Int8Build(parity, receipt, gate.failures(parity))
