"""distilserve: dynamic-batching ONNX Runtime server for DistilBERT-class encoders."""

__version__ = "0.1.0"
