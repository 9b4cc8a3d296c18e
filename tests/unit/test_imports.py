"""The serving path must never import the training stack, nor decoding the server stack."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("modules", "forbidden"),
    [
        ("service.app, service.cli, service.engine, service.decoding.predict", ("torch", "transformers", "optimum")),
        ("service.decoding.predict, service.decoding.aggregate", ("fastapi", "onnxruntime", "uvicorn")),
    ],
)
def test_import_boundaries(modules: str, forbidden: tuple[str, ...]) -> None:
    code = f"import sys, {modules}; bad = [m for m in {forbidden!r} if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
