"""Hugging Face checkpoint -> verified, fused ONNX model directory with a manifest."""

__version__ = "0.1.0"
