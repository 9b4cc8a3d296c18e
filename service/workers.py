"""``bioner serve --workers N``: N server processes on one port, and the process that minds them.

One server process keeps a core busy with Python (HTTP, tokenising, decoding) while ONNX Runtime
runs: on a machine with more cores than that, throughput stops growing with cores. Several
processes, each with its own copy of the models and ``cores / N`` inference threads, share one
listening socket that this supervisor binds, and the kernel hands each new connection to one of
them. The supervisor itself loads no model and serves nothing but ``metrics_port``.

- SIGTERM or SIGINT is passed on to every worker, which drains as a single server does (``/ready``
  503 first, the listener closed after ``drain_grace_s``); a second one skips the grace period.
  The supervisor exits 0 when all have stopped.
- A worker that dies (killed, out of memory) is replaced; more than ``MAX_RESTARTS`` in
  ``RESTART_WINDOW_S`` stops the service with status 1 rather than looping.
- A worker that cannot load its models exits 2, and so does the whole service, as one process would.
- Workers live in their own process group (a terminal's Ctrl-C reaches the supervisor only, which
  passes it on once) and stop by themselves if the supervisor vanishes.
- Metrics: every worker writes its series to ``PROMETHEUS_MULTIPROC_DIR`` (``service.metrics``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import deque
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

from service.settings import Settings

log = logging.getLogger(__name__)

CANNOT_START = 2  # a worker's status when its models would not load (as ``bioner serve``'s)
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
_POLL_S = 0.1


def cores() -> int:
    """The cores this process may run on (a container's cpuset, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def per_worker(settings: Settings, available: int) -> Settings:
    """Each worker's settings: with ``intra_op_threads`` 0, the cores split evenly between the
    workers (at least one thread each), so N sessions do not each start a thread per core."""
    if settings.intra_op_threads:
        return settings
    return settings.model_copy(update={"intra_op_threads": max(1, available // settings.workers)})


def supervise(settings: Settings) -> int:
    from service.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    try:
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        bound = socket.create_server((settings.host, settings.port), family=family, backlog=2048)
    except OSError as exc:
        print(f"bioner: cannot start: {settings.host}:{settings.port}: {exc.strerror}", file=sys.stderr)
        return CANNOT_START
    metrics_dir, made_dir = _metrics_dir()
    worker = per_worker(settings, cores())
    log.info(
        "serving on %s:%d with %d workers, %d inference threads each (%d cores)",
        settings.host,
        settings.port,
        settings.workers,
        worker.intra_op_threads,
        cores(),
    )
    try:
        if settings.metrics_port is not None:
            from prometheus_client import start_http_server

            from service.metrics import shared_registry

            start_http_server(settings.metrics_port, settings.metrics_host, registry=shared_registry())
        return _Supervisor(worker, bound).run()
    finally:
        bound.close()
        if made_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _metrics_dir() -> tuple[Path, bool]:
    """The folder the workers' metrics files go to: the operator's ``PROMETHEUS_MULTIPROC_DIR``,
    emptied of an earlier run's files, or a fresh one that is removed at exit."""
    from service.metrics import MULTIPROCESS_DIR

    given = os.environ.get(MULTIPROCESS_DIR)
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink()
        return folder, False
    folder = Path(tempfile.mkdtemp(prefix="bioner-metrics-"))
    os.environ[MULTIPROCESS_DIR] = str(folder)  # before any worker starts: they inherit it
    return folder, True


class _Supervisor:
    def __init__(self, settings: Settings, bound: socket.socket) -> None:
        self._settings = settings
        self._socket = bound
        self._context = multiprocessing.get_context("spawn")  # a clean interpreter: no threads forked mid-state
        self._workers: list[BaseProcess] = []
        self._signals: list[int] = []
        self._forwarded = 0
        self._restarts: deque[float] = deque()

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self._workers = [self._start(i) for i in range(self._settings.workers)]
        while not self._signals:
            failed = self._replace_dead()
            if failed is not None:
                self._stop_all()
                return failed
            time.sleep(_POLL_S)
        return self._drain()

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self._signals.append(sig)

    def _start(self, index: int) -> BaseProcess:
        process = self._context.Process(target=_worker, args=(self._settings, self._socket), name=f"bioner-worker-{index}")
        process.start()
        return process

    def _replace_dead(self) -> int | None:
        """Start a worker in place of each dead one; the service's exit status when it must stop."""
        for index, process in enumerate(self._workers):
            if process.is_alive():
                continue
            _forget(process)
            if process.exitcode == CANNOT_START:
                log.error("worker %d could not load its models: stopping", index)
                return CANNOT_START
            now = time.monotonic()
            while self._restarts and now - self._restarts[0] > RESTART_WINDOW_S:
                self._restarts.popleft()
            if len(self._restarts) >= MAX_RESTARTS:
                log.error("workers died %d times within %.0f s: stopping", MAX_RESTARTS, RESTART_WINDOW_S)
                return 1
            self._restarts.append(now)
            log.error("worker %d (pid %s) exited with status %s: starting another", index, process.pid, process.exitcode)
            self._workers[index] = self._start(index)
        return None

    def _drain(self) -> int:
        """Pass every signal on until the workers are gone; kill what outlives the drain timeout."""
        deadline = time.monotonic() + self._settings.drain_grace_s + self._settings.drain_timeout_s + 10
        while any(p.is_alive() for p in self._workers):
            while self._forwarded < len(self._signals):
                self._forwarded += 1
                for process in self._workers:
                    _signal(process, signal.SIGTERM)
            if time.monotonic() > deadline:
                log.error("workers still running %.0f s after the drain timeout: killing them", 10.0)
                for process in self._workers:
                    _signal(process, signal.SIGKILL)
                break
            time.sleep(_POLL_S)
        for process in self._workers:
            process.join(timeout=5)
            _forget(process)
        return 0

    def _stop_all(self) -> None:
        for process in self._workers:
            _signal(process, signal.SIGTERM)
        for process in self._workers:
            process.join(timeout=self._settings.drain_grace_s + self._settings.drain_timeout_s + 5)
            if process.is_alive():
                _signal(process, signal.SIGKILL)
                process.join(timeout=5)
            _forget(process)


def _signal(process: BaseProcess, sig: int) -> None:
    if process.pid is not None and process.is_alive():
        try:
            os.kill(process.pid, sig)
        except ProcessLookupError:  # exited between the check and the signal
            pass


def _forget(process: BaseProcess) -> None:
    """A dead worker's live gauges (queue depth, readiness) leave the sums."""
    from prometheus_client import multiprocess

    if process.pid is not None:
        multiprocess.mark_process_dead(process.pid)  # type: ignore[no-untyped-call]


def _worker(settings: Settings, bound: socket.socket) -> None:
    os.setpgrp()  # signals come from the supervisor alone
    threading.Thread(target=_stop_with_parent, args=(os.getppid(),), daemon=True, name="bioner-parent-watch").start()
    from service.cli import serve

    sys.exit(serve(settings, sockets=[bound]))


def _stop_with_parent(parent: int) -> None:
    """A worker whose supervisor was killed drains and exits instead of holding the port."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)
