"""Serving side of the model: manifest (exported-dir layout), export (Optimum → ONNX), runtime (ONNX Runtime),
resolution of the configured model, and the lookup of a built starter model. Training (the starter build,
fine-tuning, evaluation) is the top-level ``training`` package, out of the runtime.
"""
