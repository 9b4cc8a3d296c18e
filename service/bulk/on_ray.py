"""``bioner annotate --ray``: the same jobs on Ray Data, ``map_batches`` over an actor pool whose
actors each load the model once and run :class:`FileAnnotator`, the function the local run uses.

On a cluster every node must see the input and output paths (a shared file system or a mounted
bucket); outputs are written by the actors, one file per input, atomically, so the resume rule
(a file that exists is done) holds there too.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from service.bulk.annotator import FileAnnotator, FileStats, Options
from service.bulk.files import Job
from service.bulk.local import Totals


class _Actor:
    def __init__(self, options: Options) -> None:
        self.annotate = FileAnnotator(options)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        rows: dict[str, list[Any]] = {key: [] for key in ("documents", "passages", "tokens", "entities", "error")}
        for source, target in zip(batch["source"], batch["target"]):
            try:  # one bad file is reported and the run goes on, as on local processes
                stats, error = self.annotate(Job(Path(str(source)), Path(str(target)))), ""
            except Exception as exc:
                stats, error = FileStats(0, 0, 0, 0, 0), f"{source}: {type(exc).__name__}: {exc}"
            for key in ("documents", "passages", "tokens", "entities"):
                rows[key].append(getattr(stats, key))
            rows["error"].append(error)
        return {key: np.array(values) for key, values in rows.items()}


def run_on_ray(jobs: list[Job], options: Options, actors: int, address: str | None = None) -> Totals:
    import ray

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    totals = Totals()
    todo = [j for j in jobs if not j.target.exists()]
    totals.skipped = len(jobs) - len(todo)
    started = time.perf_counter()
    if todo:
        items = [{"source": str(j.source), "target": str(j.target)} for j in todo]
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            _Actor,
            fn_constructor_kwargs={"options": options},
            batch_size=1,
            concurrency=actors,
            num_cpus=options.threads,
        )
        for row in dataset.iter_rows():
            if row["error"]:
                totals.failed.append(str(row["error"]))
                continue
            totals.files += 1
            for key in ("documents", "passages", "tokens", "entities"):
                setattr(totals, key, getattr(totals, key) + int(row[key]))
    totals.seconds = time.perf_counter() - started
    return totals
