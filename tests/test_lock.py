"""The serving lock is what is installed, and agrees with the development lock."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

LOCKS = Path(__file__).resolve().parents[1] / "requirements"
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)", re.M)


def pins(name: str) -> dict[str, str]:
    return {pkg.lower().replace("_", "-"): ver for pkg, ver in PIN.findall((LOCKS / name).read_text())}


def test_serving_lock_agrees_with_dev_lock() -> None:
    serving, dev = pins("serving.lock"), pins("dev.lock")
    assert {"onnxruntime", "fastapi", "numpy", "tokenizers", "pydantic", "uvicorn"} <= set(serving)
    assert "torch" not in serving and "transformers" not in serving  # the serving path stays free of them
    assert {pkg: ver for pkg, ver in serving.items() if dev.get(pkg) != ver} == {}


def test_installed_serving_packages_are_the_locked_versions() -> None:
    mismatched = {}
    for pkg, locked in pins("serving.lock").items():
        try:
            installed = version(pkg)
        except PackageNotFoundError:
            continue  # platform-specific extras (uvloop on Windows) may be absent
        if installed.split("+")[0] != locked.split("+")[0]:
            mismatched[pkg] = (installed, locked)
    assert mismatched == {}, "install with -c requirements/dev.lock (see requirements/README.md)"
