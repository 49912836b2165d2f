"""`python -m app.gpu_check.preflight PROVIDER...`: can a bare process start a session on these providers?

Run in the environment the servers get, before minutes go into exports: a session on a one-node graph,
with the server's provider options. Prints one JSON line: available and active providers, or the error.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path


def _write_graph(path: Path) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.eye(64, dtype=np.float32), "weight")
    node = helper.make_node("MatMul", ["x", "weight"], ["y"])
    graph = helper.make_graph(
        [node], "preflight", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 64])], [weight],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))


def check(providers: list[str]) -> dict[str, object]:
    import numpy as np
    import onnxruntime as ort

    from app.providers import provider_options

    report: dict[str, object] = {"onnxruntime": ort.__version__, "available": ort.get_available_providers(), "active": []}
    with tempfile.TemporaryDirectory(prefix="gpu-check-preflight-") as scratch:
        path = Path(scratch) / "preflight.onnx"
        _write_graph(path)
        try:
            session = ort.InferenceSession(str(path), providers=[(name, provider_options(name)) for name in providers])
            output = session.run(None, {"x": np.ones((2, 64), dtype=np.float32)})[0]
        except Exception as error:  # onnxruntime's errors share no base class
            report["error"] = f"{type(error).__name__}: {str(error).strip()[:800]}"
            return report
    report["active"] = session.get_providers()
    report["ran"] = bool(np.allclose(output, 1.0))
    return report


def main(argv: list[str] | None = None) -> int:
    providers = list(sys.argv[1:] if argv is None else argv) or ["CPUExecutionProvider"]
    print(json.dumps(check(providers)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
