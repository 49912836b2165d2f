"""The GPU variants and CUDA graphs on the serving side, tested where there is no GPU: which variant each
provider gets, the packed backend's inputs and budget, its refusal off CUDA, and the CUDA-graph buckets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app import providers as prov
from app.backend import (
    BucketBuffers,
    Buckets,
    CudaGraphBackend,
    OnnxBackend,
    PackedOnnxBackend,
    TokenBatch,
    TokenItem,
    Wants,
    bucket_sizes,
    open_backend,
    pad,
    pad_to_bucket,
)
from app.batcher import batch_cost, plan_batch
from app.model_config import ModelOptions
from app.server import StartupError, create_app
from app.settings import Settings
from model_export.gpu_variants import PACKED, UNFUSED
from model_export.manifest import ATTENTION_MASK, INPUT_IDS, SENTENCE_EMBEDDING, read_manifest

PAD = 0


def batch_of(*rows: list[int]) -> TokenBatch:
    return TokenBatch.of([TokenItem(np.array(row, dtype=np.int64), Wants()) for row in rows])


@pytest.fixture(scope="module")
def gpu_variant_dirs(tmp_path_factory: pytest.TempPathFactory, tiny_mlm_checkpoint: Path) -> dict[str, Path]:
    """The tiny masked-LM and encoder exported with fp32 and both GPU variants."""
    from model_export.pipeline import ExportOptions, export_model
    from tests.tiny_models import build_tiny_checkpoint

    root = tmp_path_factory.mktemp("gpu-variants")
    encoder = build_tiny_checkpoint(root / "ckpt-encoder", "bert-encoder")
    for name, checkpoint in (("mlm", tiny_mlm_checkpoint), ("encoder", encoder)):
        options = ExportOptions(variants=("fp32", UNFUSED, PACKED), model_id=f"tiny-{name}")
        export_model(str(checkpoint), root / name, options, lambda _: None)
    return {"mlm": root / "mlm", "encoder": root / "encoder"}


class TestVariantChoice:
    def test_tensorrt_gets_the_unfused_graph(self, gpu_variant_dirs: dict[str, Path]) -> None:
        manifest = read_manifest(gpu_variant_dirs["mlm"])
        assert prov.choose_variant(manifest, prov.TENSORRT, None) == UNFUSED

    def test_a_tensorrt_provider_list_loads_the_unfused_graph(self, gpu_variant_dirs: dict[str, Path]) -> None:
        """The server's two steps: the providers it plans from the request, then the variant for the first."""
        manifest = read_manifest(gpu_variant_dirs["mlm"])
        requested = ModelOptions(providers=["tensorrt", "cuda", "cpu"]).providers
        planned = prov.plan_providers(requested, [prov.TENSORRT, prov.CUDA, prov.CPU], strict=True)
        assert planned == [prov.TENSORRT, prov.CUDA, prov.CPU]
        assert prov.choose_variant(manifest, planned[0], None) == UNFUSED

    def test_without_an_unfused_graph_tensorrt_falls_back_to_fp32(self, gpu_variant_dirs: dict[str, Path]) -> None:
        manifest = read_manifest(gpu_variant_dirs["mlm"])
        fused_only = manifest.model_copy(update={"variants": {"fp32": manifest.variants["fp32"]}})
        assert prov.choose_variant(fused_only, prov.TENSORRT, None) == "fp32"

    def test_cuda_and_cpu_never_get_a_gpu_variant_unasked(self, gpu_variant_dirs: dict[str, Path]) -> None:
        manifest = read_manifest(gpu_variant_dirs["mlm"])
        assert prov.choose_variant(manifest, prov.CUDA, None) == "fp32"  # no fp16 here; packed stays opt-in
        assert prov.choose_variant(manifest, prov.CPU, None) == "fp32"
        assert prov.choose_variant(manifest, prov.CUDA, PACKED) == PACKED

    def test_a_session_that_fell_back_reloads_on_the_provider_it_fell_to(self) -> None:
        planned = [prov.TENSORRT, prov.CUDA, prov.CPU]
        assert prov.providers_from(planned, prov.CUDA) == [prov.CUDA, prov.CPU]  # TensorRT would not start
        assert prov.providers_from(planned, prov.CPU) == [prov.CPU]
        assert prov.providers_from([prov.CUDA], prov.CPU) == [prov.CPU]

    def test_the_variant_settings_accept_the_gpu_variants(self) -> None:
        assert ModelOptions(variant=PACKED).variant == PACKED
        assert ModelOptions(variant=UNFUSED).variant == UNFUSED


class TestPackedBackend:
    def test_the_packed_graph_is_fed_right_padded_ids_whose_mask_rows_count_the_tokens(self) -> None:
        """RemovePadding takes each row's token count (the mask's row sum) and assumes right padding."""
        padded = pad(batch_of([101, 7, 102], [101, 7, 8, 9, 102], [101, 102]), PAD)
        assert padded.input_ids.tolist() == [[101, 7, 102, 0, 0], [101, 7, 8, 9, 102], [101, 102, 0, 0, 0]]
        assert padded.attention_mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
        assert padded.attention_mask.sum(axis=1).tolist() == [3, 5, 2]

    def test_the_token_counts_removepadding_reads_are_the_lengths_the_backend_fed(self, gpu_variant_dirs: dict[str, Path]) -> None:
        """RemovePadding has no CPU kernel, but the tensor it reads does: the packed graph's count input,
        exposed in the fused fp32 graph it was built from and run on the padded batch."""
        import onnx
        import onnxruntime as ort

        model_dir = gpu_variant_dirs["mlm"]
        manifest = read_manifest(model_dir)
        packed = onnx.load(str(model_dir / manifest.variant(PACKED).file))
        (remove,) = [node for node in packed.graph.node if node.op_type == "RemovePadding"]
        fused = onnx.load(str(model_dir / manifest.variant("fp32").file))
        fused.graph.output.append(onnx.helper.make_tensor_value_info(remove.input[1], onnx.TensorProto.INT32, None))
        session = ort.InferenceSession(fused.SerializeToString(), providers=["CPUExecutionProvider"])
        batch = batch_of([101, 1000, 102], [101, 1000, 1001, 1002, 1003, 102], [101, 102])
        padded = pad(batch, manifest.special_tokens.pad.id)
        (counts,) = session.run([remove.input[1]], {INPUT_IDS: padded.input_ids, ATTENTION_MASK: padded.attention_mask})
        assert counts.tolist() == batch.lengths.tolist() == [3, 6, 2]

    def test_the_token_budget_counts_real_tokens_for_the_packed_backend(self) -> None:
        assert PackedOnnxBackend.is_padded is False and OnnxBackend.is_padded is True
        lengths = [3, 5, 2, 60]
        assert batch_cost(lengths, padded=False) == 70
        assert batch_cost(lengths, padded=True) == 240
        # Under a 100-token budget the padding backend batches three; the packed one takes all four.
        assert len(plan_batch(lengths, 100, 32, padded=True)) == 3
        assert len(plan_batch(lengths, 100, 32, padded=False)) == 4

    @pytest.mark.parametrize("provider", [prov.CPU, prov.TENSORRT])
    def test_the_packed_variant_is_refused_off_cuda_in_one_line(self, provider: str) -> None:
        with pytest.raises(prov.ProviderError, match=f"variant fp16-packed runs on {prov.CUDA} only") as raised:
            prov.check_variant_provider(PACKED, provider)
        assert "\n" not in str(raised.value)
        prov.check_variant_provider(PACKED, prov.CUDA)
        prov.check_variant_provider(UNFUSED, provider)

    def test_the_server_refuses_to_load_the_packed_variant_on_the_cpu(self, gpu_variant_dirs: dict[str, Path]) -> None:
        settings = Settings(model_dir=[gpu_variant_dirs["encoder"]], variant=PACKED, providers=["cpu"])
        with pytest.raises(StartupError, match="tiny-encoder: variant fp16-packed runs on CUDAExecutionProvider only") as raised:
            create_app(settings)
        assert "\n" not in str(raised.value)

    def test_the_unfused_graph_serves_on_the_cpu_like_fp32(self, gpu_variant_dirs: dict[str, Path], tmp_path: Path) -> None:
        model_dir = gpu_variant_dirs["mlm"]
        manifest = read_manifest(model_dir)
        limits = prov.ShapeLimits(4, 256, 16)
        batch = TokenBatch.of([
            TokenItem(np.array([101, 1000, manifest.special_tokens.mask.id, 102]), Wants(mask_top_k=5)),
            TokenItem(np.array([101, 1001, 1002, 1003, 1004, 102]), Wants()),
        ])
        outputs = {}
        for variant in ("fp32", UNFUSED):
            backend = open_backend(model_dir, manifest, ModelOptions(variant=variant, providers=["cpu"]), limits, tmp_path)
            assert type(backend) is OnnxBackend and backend.info.variant == variant
            outputs[variant] = backend.run(batch)
        for fused, unfused in zip(outputs["fp32"], outputs[UNFUSED], strict=True):
            np.testing.assert_allclose(fused.embedding, unfused.embedding, atol=1e-4)
        np.testing.assert_allclose(outputs["fp32"][0].mask_logits, outputs[UNFUSED][0].mask_logits, atol=1e-4)


class TestProviderOptions:
    def test_cuda_graph_is_off_unless_asked(self) -> None:
        assert "enable_cuda_graph" not in prov.provider_options(prov.CUDA)
        assert prov.provider_options(prov.CUDA, cuda_graph=True)["enable_cuda_graph"] is True
        assert ModelOptions().cuda_graph is False

    def test_the_model_setting_reaches_the_cuda_provider_the_session_is_created_with(
        self, tiny_encoder_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import onnxruntime as ort

        from app import backend

        created: list[list] = []
        monkeypatch.setattr(ort, "InferenceSession", lambda path, sess_options, providers: created.append(providers))
        manifest = read_manifest(tiny_encoder_model_dir)
        limits = prov.ShapeLimits(4, 256, 16)
        for cuda_graph in (False, True):
            backend._create_session(tiny_encoder_model_dir, manifest, "fp32", [prov.CUDA, prov.CPU],
                                    ModelOptions(cuda_graph=cuda_graph), limits, tmp_path)
        assert [dict(providers)[prov.CUDA].get("enable_cuda_graph") for providers in created] == [None, True]
        assert [dict(providers)[prov.CPU] for providers in created] == [{}, {}]

    def test_tensorrt_keeps_layer_norms_in_fp32_when_it_builds_fp16(self) -> None:
        assert prov.provider_options(prov.TENSORRT)["trt_layer_norm_fp32_fallback"] is True
        assert prov.provider_options(prov.TENSORRT, trt_fp16=False)["trt_layer_norm_fp32_fallback"] is False


class TestBuckets:
    def test_sizes_are_powers_of_two_up_to_the_limit(self) -> None:
        assert bucket_sizes(32) == (1, 2, 4, 8, 16, 32)
        assert bucket_sizes(24) == (1, 2, 4, 8, 16, 24)
        assert bucket_sizes(512, 16) == (16, 32, 64, 128, 256, 512)
        assert bucket_sizes(1) == (1,)

    def test_a_batch_goes_to_the_smallest_bucket_that_holds_it(self) -> None:
        buckets = Buckets.for_limits(prov.ShapeLimits(max_batch_size=32, max_batch_tokens=8192, max_length=128))
        assert buckets.lengths == (16, 32, 64, 128)
        assert buckets.shape(1, 3) == (1, 16)
        assert buckets.shape(3, 17) == (4, 32)
        assert buckets.shape(32, 128) == (32, 128)
        ids = [buckets.graph_id((rows, length)) for rows in buckets.batches for length in buckets.lengths]
        assert len(set(ids)) == len(ids) and min(ids) == 1  # graph 0 is what unannotated runs capture

    def test_padding_to_a_bucket_adds_columns_and_filler_rows_with_one_token(self) -> None:
        padded = pad_to_bucket(batch_of([101, 7, 102], [101, 102]), PAD, (4, 5))
        assert padded.input_ids.tolist() == [[101, 7, 102, 0, 0], [101, 102, 0, 0, 0], [0] * 5, [0] * 5]
        assert padded.attention_mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [1, 0, 0, 0, 0]]

    def test_padding_to_a_bucket_keeps_a_pairs_token_types(self) -> None:
        pair = TokenItem(np.array([101, 7, 102, 8, 102]), Wants(), type_ids=np.array([0, 0, 0, 1, 1]))
        batch = TokenBatch.of([pair, TokenItem(np.array([101, 102]), Wants())])
        padded = pad_to_bucket(batch, PAD, (4, 8))
        assert padded.token_type_ids.tolist() == [[0, 0, 0, 1, 1, 0, 0, 0], [0] * 8, [0] * 8, [0] * 8]

    def test_bucket_buffers_give_the_session_answers_run_after_run(self, tiny_encoder_model_dir: Path) -> None:
        """The bound, preallocated buffers on the CPU (the GPU check runs them on CUDA, where they are captured)."""
        import onnxruntime as ort

        manifest = read_manifest(tiny_encoder_model_dir)
        session = ort.InferenceSession(str(tiny_encoder_model_dir / manifest.variant("fp32").file), providers=["CPUExecutionProvider"])
        buffers = BucketBuffers(session, (4, 16), manifest.arch.hidden_size, 1, "cpu", 0)
        for rows in ([101, 1000, 102], [101, 1001, 1002, 102]), ([101, 1003, 1004, 1005, 1006, 102],):
            padded = pad_to_bucket(batch_of(*rows), PAD, (4, 16))
            expected = session.run([SENTENCE_EMBEDDING], {INPUT_IDS: padded.input_ids, ATTENTION_MASK: padded.attention_mask})[0]
            np.testing.assert_allclose(buffers.run(padded), expected, atol=1e-6)
        assert buffers.runs == 2

    def test_cuda_graphs_are_refused_for_fill_mask_classifiers_and_off_cuda(
        self, gpu_variant_dirs: dict[str, Path], tiny_classifier_dir, tmp_path: Path
    ) -> None:
        limits = prov.ShapeLimits(4, 256, 16)
        options = ModelOptions(cuda_graph=True, providers=["cpu"])
        mlm = gpu_variant_dirs["mlm"]
        with pytest.raises(prov.ProviderError, match="cuda_graph serves embedding-only models"):
            CudaGraphBackend(mlm, read_manifest(mlm), options, limits, tmp_path)
        classifier = tiny_classifier_dir("sentiment", "bert")
        with pytest.raises(prov.ProviderError, match="cuda_graph serves embedding-only models"):
            CudaGraphBackend(classifier, read_manifest(classifier), options, limits, tmp_path)
        encoder = gpu_variant_dirs["encoder"]
        with pytest.raises(prov.ProviderError, match=r"cuda_graph needs the CUDA provider with io_binding; the session runs on \['CPU"):
            open_backend(encoder, read_manifest(encoder), options, limits, tmp_path)
