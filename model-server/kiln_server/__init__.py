"""Kiln's model server: ONNX Runtime behind the Open Inference Protocol v2."""

__version__ = "0.1.0"
