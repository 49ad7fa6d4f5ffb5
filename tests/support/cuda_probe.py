"""Does ONNX Runtime's CUDA execution provider really work here? (Tests that depend on the answer use it.)

``ort.get_available_providers()`` lists CUDA for the onnxruntime-gpu wheel even on machines without a GPU,
so the probe creates a session with the CUDA provider first and looks at which provider the session got.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

CUDA = "CUDAExecutionProvider"


@cache
def cuda_session_works(onnx_path: Path) -> bool:
    import onnxruntime as ort

    if CUDA not in ort.get_available_providers():
        return False
    options = ort.SessionOptions()
    options.log_severity_level = 4  # a failed CUDA start is the expected answer on most machines
    ort.set_default_logger_severity(4)
    try:
        session = ort.InferenceSession(str(onnx_path), options, providers=[CUDA, "CPUExecutionProvider"])
    except Exception:
        return False
    finally:
        ort.set_default_logger_severity(2)  # onnxruntime's default (warning)
    return session.get_providers()[0] == CUDA
