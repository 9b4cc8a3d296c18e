"""--device: the GPU when torch sees one, the CPU otherwise, a clear error when asked for what is not there."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from train.device import resolve, to_device  # noqa: E402


def test_auto_follows_what_torch_sees() -> None:
    assert resolve("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve("cpu") == torch.device("cpu")


def test_unknown_or_missing_devices_are_refused() -> None:
    with pytest.raises(ValueError, match="--device takes one of"):
        resolve("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch sees no GPU"):
            resolve("cuda")


def test_batches_move_whole() -> None:
    batch = {"input_ids": torch.ones(2, 3, dtype=torch.long), "labels": torch.zeros(2, 3, dtype=torch.long)}
    moved = to_device(batch, resolve("auto"))
    assert set(moved) == set(batch) and all(t.device.type == resolve("auto").type for t in moved.values())
