"""Where a run trains: the GPU when torch sees one (a MiniLM epoch takes seconds there against ten
minutes on two CPU cores), else the CPU. Batches are built on the CPU and moved per step; checkpoints
are saved from wherever the model is and always load on the CPU (export and serving never need a GPU).
"""

from __future__ import annotations

import torch

CHOICES = ("auto", "cpu", "cuda")


def resolve(name: str) -> torch.device:
    if name not in CHOICES:
        raise ValueError(f"--device takes one of {CHOICES}, not {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda, but torch sees no GPU (a CPU build, or no driver)")
    return torch.device(name)


def device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {name: tensor.to(device, non_blocking=True) for name, tensor in batch.items()}
