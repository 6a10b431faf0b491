"""Kiln's model server: ONNX Runtime behind the Open Inference Protocol v2."""
