"""``bioner annotate`` on this machine: one process, or a pool of processes each holding the
model, over the files still to do; a progress bar with documents/s and an ETA by input bytes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context

from tqdm import tqdm

from service.bulk.annotator import FileAnnotator, FileStats, Options
from service.bulk.files import Job

_WORKER: FileAnnotator | None = None


def _init_worker(options: Options) -> None:
    global _WORKER
    _WORKER = FileAnnotator(options)


def _run_in_worker(job: Job) -> FileStats:
    assert _WORKER is not None, "worker not initialised"
    return _WORKER(job)


@dataclass
class Totals:
    files: int = 0
    documents: int = 0
    passages: int = 0
    tokens: int = 0
    entities: int = 0
    seconds: float = 0.0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)

    def add(self, stats: FileStats) -> None:
        self.files += 1
        self.documents += stats.documents
        self.passages += stats.passages
        self.tokens += stats.tokens
        self.entities += stats.entities

    def as_dict(self) -> dict[str, object]:
        rate = {"documents_per_s": self.documents / self.seconds, "tokens_per_s": self.tokens / self.seconds} if self.seconds else {}
        return {**self.__dict__, **rate}


def _results(jobs: list[Job], options: Options, workers: int) -> Iterator[tuple[Job, FileStats | Exception]]:
    if workers <= 1:
        annotator = FileAnnotator(options)
        for job in jobs:
            try:
                yield job, annotator(job)
            except Exception as exc:  # one bad file is reported, the run goes on
                yield job, exc
        return
    # fork would copy a parent's ONNX Runtime threads; spawn starts each worker clean
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker, initargs=(options,)) as pool:
        futures = [(job, pool.submit(_run_in_worker, job)) for job in jobs]
        for job, future in futures:
            try:
                yield job, future.result()
            except Exception as exc:
                yield job, exc


def run_local(jobs: list[Job], options: Options, workers: int = 1, progress: bool = True) -> Totals:
    totals = Totals()
    todo = [j for j in jobs if not j.target.exists()]
    totals.skipped = len(jobs) - len(todo)
    started = time.perf_counter()
    with tqdm(total=sum(j.source.stat().st_size for j in todo), unit="B", unit_scale=True, disable=not progress, smoothing=0.1) as bar:
        for job, result in _results(todo, options, workers):
            if isinstance(result, Exception):
                totals.failed.append(f"{job.source}: {type(result).__name__}: {result}")
                bar.write(f"failed: {totals.failed[-1]}")
                bar.update(job.source.stat().st_size)
                continue
            totals.add(result)
            bar.update(result.input_bytes)
            elapsed = time.perf_counter() - started
            bar.set_postfix(docs_s=f"{totals.documents / elapsed:.1f}", files=f"{totals.files}/{len(todo)}", refresh=False)
    totals.seconds = time.perf_counter() - started
    return totals
