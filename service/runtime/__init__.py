"""Model bundle loading and the ONNX Runtime session."""
