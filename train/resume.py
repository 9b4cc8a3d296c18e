"""The resume state: one file per run folder, rewritten at every epoch end, checked before use.

It holds what the next epoch depends on: the weights of every trained module, the current phase's
optimiser and scheduler, every random generator, the step and epoch counters, the length of
metrics.jsonl and the caller's own values (best-so-far). It is written to a temporary file and
renamed, so a kill during the write leaves the previous epoch's state whole. When a run ends only
a small "finished" marker stays: resuming a finished run returns its result instead of training
again, and the folder does not keep weights plus optimiser moments (three times the model) for ever.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "resume.pt"
# Settings a run may resume under other values of: they change how fast it runs, not what it learns.
FREE_TO_CHANGE = frozenset({"threads", "device", "keep_epochs"})  # a run may go on on other hardware, keeping more
# Settings added after runs were saved, with the value every earlier run had: such a run still resumes.
ADDED_SETTINGS: dict[str, Any] = {"window_align": "tokens", "qat_epochs": 0, "dev_seed": None, "token_types": None}


class ResumeError(ValueError):
    """The folder's saved run cannot continue as asked (other settings)."""


def save_atomically(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file, then a rename: a kill mid-write leaves the previous file whole."""
    pending = path.with_name(path.name + ".partial")
    torch.save(obj, pending)
    os.replace(pending, path)


def save_state(folder: Path, state: dict[str, Any]) -> None:
    save_atomically(state, folder / STATE_FILE)


def load_state(folder: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """The saved state of this run; ``None`` when the folder has none (the run starts afresh)."""
    path = folder / STATE_FILE
    if not path.exists():
        return None
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)  # load_state_dict moves tensors to the params
    saved = {**{k: v for k, v in ADDED_SETTINGS.items() if k in config}, **state["config"]}
    changed = sorted(k for k in saved.keys() | config.keys() if k not in FREE_TO_CHANGE and saved.get(k) != config.get(k))
    if changed:
        what = ", ".join(f"{k} {saved.get(k)!r} -> {config.get(k)!r}" for k in changed)
        raise ResumeError(
            f"{folder} holds a run with other settings ({what}): resume with the same settings, or start afresh without --resume"
        )
    return state
