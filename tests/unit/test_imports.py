"""The serving path must never import torch, transformers or optimum."""

from __future__ import annotations

import subprocess
import sys


def test_server_imports_no_training_stack() -> None:
    code = (
        "import sys, service.app, service.cli, service.engine, service.decoding.predict;"
        "bad = [m for m in ('torch', 'transformers', 'optimum') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_decoding_imports_no_server_stack() -> None:
    code = (
        "import sys, service.decoding.predict, service.decoding.aggregate;"
        "bad = [m for m in ('fastapi', 'onnxruntime', 'uvicorn') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
