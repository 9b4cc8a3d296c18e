"""The shared epoch loop on a toy model with dropout: phases, step limits, pausing and resuming bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from train.loop import EpochStats, Phase, TrainingLoop, adamw, decay_groups  # noqa: E402
from train.resume import STATE_FILE, ResumeError  # noqa: E402

SETTINGS = {"learning_rate": 0.05, "threads": 0}


def _run(
    folder: Path, *, max_steps: int = 0, stop_after: int = 0, resume: bool = False
) -> tuple[TrainingLoop, torch.nn.Module, list[EpochStats]]:
    """Two phases of two epochs, three batches each, drawing batch order from numpy and dropout from torch."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Dropout(0.5), torch.nn.Linear(16, 1))
    data = torch.randn(12, 4, generator=torch.Generator().manual_seed(1))
    target = data.sum(dim=1, keepdim=True)
    rng = np.random.default_rng(7)
    loop = TrainingLoop(folder, {**SETTINGS, "max_steps": max_steps}, resume=resume, stop_after=stop_after)
    loop.track({"model": model}, rng)
    seen: list[EpochStats] = []

    def phase(name: str) -> Phase[list[int]]:
        optimizer, scheduler = adamw(decay_groups([model], 0.01), SETTINGS["learning_rate"], 6, 0.1)

        def step(rows: list[int]) -> tuple[torch.Tensor, int]:
            return ((model(data[rows]) - target[rows]) ** 2).mean(), len(rows)

        def plan() -> list[list[int]]:
            return [list(b) for b in np.array_split(rng.permutation(12), 3)]

        return Phase(name, 2, optimizer, scheduler, list(model.parameters()), plan, step, max_steps)

    def on_epoch_end(stats: EpochStats) -> None:
        seen.append(stats)
        loop.log({"epoch": stats.epoch, "loss": stats.loss})

    for name in ("first", "second"):
        loop.run(phase(name), on_epoch_end)
    return loop, model, seen


def _weights(model: torch.nn.Module) -> list[np.ndarray]:
    return [t.detach().numpy().copy() for t in model.state_dict().values()]


@pytest.mark.parametrize("pause_after", [1, 2, 3])
def test_a_paused_run_resumed_is_the_uninterrupted_run(tmp_path: Path, pause_after: int) -> None:
    _, straight, straight_epochs = _run(tmp_path / "straight")
    loop, _, first = _run(tmp_path / "parts", stop_after=pause_after)
    assert loop.paused and [s.epoch for s in first] == list(range(1, pause_after + 1))
    loop, resumed, rest = _run(tmp_path / "parts", resume=True)
    assert not loop.paused and loop.resumed
    assert [(s.phase, s.epoch, s.step, s.loss) for s in first + rest] == [(s.phase, s.epoch, s.step, s.loss) for s in straight_epochs]
    assert all(np.array_equal(a, b) for a, b in zip(_weights(resumed), _weights(straight)))
    logged = [json.loads(line) for line in (tmp_path / "parts" / "metrics.jsonl").read_text().splitlines()]
    assert logged == [{"epoch": s.epoch, "loss": s.loss} for s in straight_epochs]


def test_resume_cuts_the_log_lines_of_a_half_finished_epoch(tmp_path: Path) -> None:
    _run(tmp_path, stop_after=2)
    with (tmp_path / "metrics.jsonl").open("a", encoding="utf-8") as fh:
        fh.write('{"epoch": 3, "loss": "written before the kill"}\n')
    _run(tmp_path, resume=True)
    assert [json.loads(line)["epoch"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]


def test_max_steps_counts_over_phases_and_skips_what_is_left(tmp_path: Path) -> None:
    loop, _, seen = _run(tmp_path, max_steps=4)
    assert [(s.phase, s.epoch, s.step) for s in seen] == [("first", 1, 3), ("first", 2, 4)]
    assert loop.done == ["first", "second"] and not loop.paused


def test_a_finished_run_keeps_only_a_marker_and_is_not_run_again(tmp_path: Path) -> None:
    loop, _, _ = _run(tmp_path)
    loop.extra["result"] = 1.0
    loop.finish()
    state = torch.load(tmp_path / STATE_FILE, weights_only=True)
    assert state["finished"] and "modules" not in state and state["extra"] == {"result": 1.0}
    again = TrainingLoop(tmp_path, {**SETTINGS, "max_steps": 0}, resume=True)
    assert again.finished and again.extra == {"result": 1.0}


def test_resume_refuses_other_settings_and_starts_afresh_without_a_state(tmp_path: Path) -> None:
    _run(tmp_path / "run", stop_after=1)
    with pytest.raises(ResumeError, match=r"max_steps 0 -> 5"):
        TrainingLoop(tmp_path / "run", {**SETTINGS, "max_steps": 5}, resume=True)
    TrainingLoop(tmp_path / "run", {**SETTINGS, "max_steps": 0, "threads": 4}, resume=True)  # threads change speed, not results
    fresh = TrainingLoop(tmp_path / "empty", SETTINGS, resume=True)
    assert not fresh.resumed and not fresh.finished
