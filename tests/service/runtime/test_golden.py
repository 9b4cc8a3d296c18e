"""Golden answers: written, read back, compared; the service's startup self-check and ``bioner check``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest

from service.app import create_app
from service.cli import main
from service.decoding.aggregate import Entity
from service.runtime.golden import compare, read_golden, write_golden
from service.settings import Settings

TEXTS = ["The p53 kinase binds the myc gene in cells.", "", "nothing here", "蛋白 in cells"]


def entity(start: int, end: int, label: str, score: float) -> Entity:
    return Entity(start, end, label, score, "x" * (end - start))


def test_compare_passes_and_reports_differences(tmp_path: Path) -> None:
    expected = [[entity(4, 14, "protein", 0.9)], [], [entity(0, 7, "DNA", 0.5)], []]
    write_golden(tmp_path, ["a", "b", "c", "d"], expected, expected, score_tolerance=0.01)
    golden = read_golden(tmp_path)
    assert golden is not None
    report = compare(golden, lambda texts: expected)
    assert report.passed and report.texts_differing == 0 and report.agrees_with_fp32 == 4
    nudged = [[entity(4, 14, "protein", 0.905)], [], [entity(0, 7, "DNA", 0.5)], []]
    assert compare(golden, lambda texts: nudged).passed  # within tolerance
    drifted = [[entity(4, 14, "protein", 0.95)], [], [entity(0, 7, "DNA", 0.5)], []]
    report = compare(golden, lambda texts: drifted)
    assert not report.passed and report.texts_differing == 0 and "scores differ" in report.differences[0]
    relabelled = [[entity(4, 14, "DNA", 0.9)], [], [], []]
    report = compare(golden, lambda texts: relabelled)
    assert not report.passed and report.texts_differing == 2 and "text 0" in report.differences[0]


@pytest.fixture
def golden_bundle(tiny_bundle: Path, tmp_path: Path) -> Path:
    """The tiny bundle with golden answers computed by the service's own synchronous path."""
    from service.app import build_engine
    from service.metrics import Metrics

    folder = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, folder)
    engine = build_engine(Settings(model_path=folder, max_text_chars=1000, self_check=False), Metrics())
    answers = engine.recognize_sync(TEXTS)
    write_golden(folder, TEXTS, answers, answers, made_on={"graph": "fp32"})
    return folder


def _relabel_first(folder: Path) -> None:
    data = json.loads((folder / "golden.json").read_text())
    data["texts"][0]["expected"][0][2] = "DNA"
    (folder / "golden.json").write_text(json.dumps(data))


async def _model_info(folder: Path) -> tuple[dict[str, object], str]:
    app = create_app(Settings(model_path=folder, max_text_chars=1000))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return (await client.get("/model")).json(), (await client.get("/metrics")).text


async def test_startup_self_check_is_reported(golden_bundle: Path, caplog: pytest.LogCaptureFixture) -> None:
    info, metrics = await _model_info(golden_bundle)
    check = info["self_check"]
    assert isinstance(check, dict) and check["passed"] is True and check["texts"] == len(TEXTS)
    assert 'bioner_self_check_passed{model="tiny-test"} 1.0' in metrics
    _relabel_first(golden_bundle)
    info, metrics = await _model_info(golden_bundle)
    check = info["self_check"]
    assert isinstance(check, dict) and check["passed"] is False and check["texts_differing"] == 1
    assert 'bioner_self_check_passed{model="tiny-test"} 0.0' in metrics
    assert "self-check FAILED" in caplog.text


def test_bioner_check_exit_codes(golden_bundle: Path, tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report.json"
    assert main(["check", "--model-path", str(golden_bundle), "--json", str(report)]) == 0
    assert "PASSED: 4/4" in capsys.readouterr().out
    assert json.loads(report.read_text())["cpu"]["model"]
    _relabel_first(golden_bundle)
    assert main(["check", "--model-path", str(golden_bundle)]) == 1
    assert "FAILED: 3/4" in capsys.readouterr().out
    assert main(["check", "--model-path", str(tiny_bundle)]) == 2  # no golden.json


async def test_broken_golden_file_is_a_warning_not_a_crash(golden_bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (golden_bundle / "golden.json").write_text('{"texts": [{"text": "a"}]}')
    info, metrics = await _model_info(golden_bundle)
    check = info["self_check"]
    assert isinstance(check, dict) and check["passed"] is False and "not a golden-answer file" in str(check["error"])
    assert 'bioner_self_check_passed{model="tiny-test"} 0.0' in metrics
    assert main(["check", "--model-path", str(golden_bundle)]) == 2
    assert "not a golden-answer file" in capsys.readouterr().err


async def test_self_check_names_window_overrides(golden_bundle: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Golden answers are made with the bundle's windows; with others, a mismatch says why it may be expected."""
    _relabel_first(golden_bundle)
    app = create_app(Settings(model_path=golden_bundle, max_text_chars=1000, max_length=12, stride=2))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            check = (await client.get("/model")).json()["self_check"]
    assert check["passed"] is False
    assert check["window_override"] == {
        "served": "max_length 12, stride 2, align tokens",
        "bundle": "max_length 16, stride 4, align tokens",
    }
    assert "windows are overridden" in caplog.text


async def test_self_check_names_decoding_overrides(golden_bundle: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Golden answers are made with the bundle's decoding defaults; a setting that changes one is named."""
    _relabel_first(golden_bundle)
    app = create_app(Settings(model_path=golden_bundle, max_text_chars=1000, consistency="first_mention", decoding="constrained"))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            check = (await client.get("/model")).json()["self_check"]
    assert check["passed"] is False and "window_override" not in check
    assert check["decoding_override"] == {
        "served": {"aggregation_strategy": "first", "decoding": "constrained", "consistency": "first_mention"},
        "bundle": {"aggregation_strategy": "first", "decoding": "greedy", "consistency": "none"},
    }
    assert "decoding defaults are overridden" in caplog.text
