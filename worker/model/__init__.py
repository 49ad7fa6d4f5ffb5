"""Model: export (Optimum → ONNX), runtime (ONNX Runtime), resolution of the configured model, starter model."""
