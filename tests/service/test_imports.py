"""The serving path must never import the training stack, nor decoding the server stack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("modules", "forbidden"),
    [
        ("service.app, service.cli, service.engine, service.decoding.pipeline", ("torch", "transformers", "optimum")),
        ("service.decoding.pipeline, service.bundle_format", ("fastapi", "onnxruntime", "uvicorn", "torch")),
    ],
)
def test_import_boundaries(modules: str, forbidden: tuple[str, ...]) -> None:
    code = f"import sys, {modules}; bad = [m for m in {forbidden!r} if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_scoring_an_onnx_bundle_never_imports_torch(tmp_path: Path) -> None:
    """``bioner evaluate`` on a bundle runs on the serving install's stack alone."""
    from tiny_bundle import write_bundle

    bundle = write_bundle(tmp_path / "b")
    gold = tmp_path / "gold"
    gold.mkdir()
    (gold / "d1.txt").write_text("The p53 kinase binds the myc gene in cells.", encoding="utf-8")
    (gold / "d1.ann").write_text("T1\tprotein 4 14\tp53 kinase\nT2\tDNA 25 33\tmyc gene\n", encoding="utf-8")
    code = (
        "import sys, json; from train.cli import main; "
        f"code = main(['evaluate', '--model', {str(bundle)!r}, '--data', {str(gold)!r}, '--report', {str(tmp_path / 'r.json')!r}]); "
        "bad = [m for m in ('torch', 'transformers', 'optimum') if m in sys.modules]; print(bad); sys.exit(code or (1 if bad else 0))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["micro"]["support"] == 2 and report["micro"]["f1"] == 1.0
