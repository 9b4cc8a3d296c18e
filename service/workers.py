"""``bioner serve --workers N``: N server processes on one port, and the process that minds them.

One server process keeps a core busy with Python (HTTP, tokenising, decoding) while ONNX Runtime
runs: on a machine with more cores than that, throughput stops growing with cores. Several
processes, each with its own copy of the models and ``cores / N`` inference threads, share one
listening socket that this supervisor binds, and the kernel hands each new connection to one of
them. The supervisor itself loads no model and serves nothing but ``metrics_port``.

- SIGTERM or SIGINT is passed on to every worker, which drains as a single server does (``/ready``
  503 first, the listener closed after ``drain_grace_s``); a second one skips the grace period.
  The supervisor closes its own copy of the socket at the first signal, so that once the workers
  close theirs new connections are refused, not left in the backlog. It exits 0 when all stopped.
- A worker that dies (killed, out of memory) is replaced; more than ``MAX_RESTARTS`` in
  ``RESTART_WINDOW_S`` stops the service with status 1 rather than looping.
- A worker that cannot start (its models would not load: 2; its lifespan failed: 3) stops the
  whole service with the same status, as one process would.
- Workers live in their own process group (a terminal's Ctrl-C reaches the supervisor only, which
  passes it on once) and stop by themselves if the supervisor vanishes.
- Metrics: every worker writes its series to files in ``PROMETHEUS_MULTIPROC_DIR`` (set here,
  before any worker or ``prometheus_client`` import; ``service.metrics`` sums them). The
  supervisor adds its own ``bioner_ready`` series, 0 until every current worker has told it that
  it serves: a worker still loading has no series yet and would otherwise count for nothing.
"""

from __future__ import annotations

import logging
import math
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
from multiprocessing.synchronize import Event
from pathlib import Path
from types import FrameType

from service.settings import Settings

log = logging.getLogger(__name__)

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # named here, not in service.metrics: reading it must not load prometheus_client
CANNOT_START = (2, 3)  # a worker whose models would not load (``bioner serve``'s 2), or whose lifespan failed (uvicorn's 3)
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
_POLL_S = 0.1
_DIR_PREFIX = "bioner-metrics-"
_operator_dir: str | None = None


def take_metrics_dir() -> None:
    """Take ``PROMETHEUS_MULTIPROC_DIR`` out of this process's environment before anything imports
    ``prometheus_client``: one process keeps its metrics in memory, and only ``supervise`` hands a
    folder (this one, if the operator gave it) to its workers."""
    global _operator_dir
    _operator_dir = os.environ.pop(MULTIPROCESS_DIR, None) or _operator_dir


def cores(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The cores this process may use: its CPU set, and its cgroup's CPU quota (a container's
    ``limits.cpu``), whichever is smaller."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            available = min(available, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):  # no cgroup v2 quota to read
        pass
    return available


def inference_threads(settings: Settings, available: int) -> int:
    """The size of each worker's ONNX Runtime thread pool: the operator's, else the worker's share
    of the cores. The lanes' runs share that one pool, each calling thread counting as one of its
    threads, so L lanes run on ``pool - 1 + L`` threads: a pool of ``share - L + 1`` keeps them to
    the share (one thread per lane on two cores). One worker of one lane keeps 0, ONNX Runtime's
    own choice."""
    if settings.intra_op_threads or settings.workers * settings.inference_lanes == 1:
        return settings.intra_op_threads
    return max(1, available // settings.workers - settings.inference_lanes + 1)


def per_worker(settings: Settings, available: int) -> Settings:
    """Each worker's settings, with its share of the cores settled once by the supervisor."""
    return settings.model_copy(update={"intra_op_threads": inference_threads(settings, available)})


def supervise(settings: Settings) -> int:
    from service.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    try:
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        bound = socket.create_server((settings.host, settings.port), family=family, backlog=2048)
    except OSError as exc:
        print(f"bioner: cannot start: {settings.host}:{settings.port}: {exc.strerror}", file=sys.stderr)
        return CANNOT_START[0]
    try:
        metrics_dir, made_dir = _metrics_dir()
    except OSError as exc:
        bound.close()
        print(f"bioner: cannot start: metrics folder: {exc}", file=sys.stderr)
        return CANNOT_START[0]
    available = cores()
    worker = per_worker(settings, available)
    log.info(
        "serving on %s:%d with %d workers, each %d inference lanes sharing a pool of %d threads (%d cores)",
        settings.host,
        settings.port,
        settings.workers,
        settings.inference_lanes,
        worker.intra_op_threads,
        available,
    )
    try:
        if settings.metrics_port is not None:
            from prometheus_client import start_http_server

            from service.metrics import shared_registry

            start_http_server(settings.metrics_port, settings.metrics_host, registry=shared_registry())
        return _Supervisor(worker, bound).run()
    finally:
        bound.close()
        _forget(os.getpid())
        if made_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _metrics_dir() -> tuple[Path, bool]:
    """The folder the workers' metrics files go to: the operator's, emptied of an earlier run's
    files, or a fresh one that is removed at exit (and, should this supervisor be killed, by the
    next one: folders of supervisors no longer alive are removed first)."""
    if _operator_dir:
        folder = Path(_operator_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink()
        made = False
    else:
        for old in Path(tempfile.gettempdir()).glob(f"{_DIR_PREFIX}*"):
            owner = old.name.removeprefix(_DIR_PREFIX).split("-")[0]
            if owner.isdigit() and not Path(f"/proc/{owner}").exists():
                shutil.rmtree(old, ignore_errors=True)
        folder = Path(tempfile.mkdtemp(prefix=f"{_DIR_PREFIX}{os.getpid()}-"))
        made = True
    os.environ[MULTIPROCESS_DIR] = str(folder)  # before prometheus_client loads here, and before any worker starts
    return folder, made


class _Supervisor:
    def __init__(self, settings: Settings, bound: socket.socket) -> None:
        from prometheus_client import Gauge

        self._settings = settings
        self._socket = bound
        self._context = multiprocessing.get_context("spawn")  # a clean interpreter: no threads forked mid-state
        self._workers: list[tuple[BaseProcess, Event]] = []  # each with its "serving now" flag
        self._signals: list[int] = []
        self._forwarded = 0
        self._restarts: deque[float] = deque()
        self._ready = Gauge("bioner_ready", "1 when the model is loaded and warmed up (every worker)", multiprocess_mode="livemin")
        self._ready.set(0)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self._workers = [self._start(index) for index in range(self._settings.workers)]
        while not self._signals:
            failed = self._replace_dead()
            if failed is not None:
                self._stop_all()
                return failed
            self._ready.set(1 if all(started.is_set() for _, started in self._workers) else 0)
            time.sleep(_POLL_S)
        return self._drain()

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self._signals.append(sig)

    def _start(self, index: int) -> tuple[BaseProcess, Event]:
        started = self._context.Event()
        process = self._context.Process(target=_worker, args=(self._settings, self._socket, started), name=f"bioner-worker-{index}")
        process.start()
        return process, started

    def _replace_dead(self) -> int | None:
        """Start a worker in place of each dead one; the service's exit status when it must stop."""
        for index, (process, _) in enumerate(self._workers):
            if process.is_alive():
                continue
            _forget(process.pid)
            if process.exitcode in CANNOT_START:
                log.error("worker %d could not start (status %s): stopping", index, process.exitcode)
                return process.exitcode
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

    @property
    def _processes(self) -> list[BaseProcess]:
        return [process for process, _ in self._workers]

    def _drain(self) -> int:
        """Pass every signal on until the workers are gone; kill what outlives the drain timeout."""
        self._ready.set(0)
        self._socket.close()  # no worker starts from now on: once they close theirs, connections are refused
        deadline = time.monotonic() + self._settings.drain_grace_s + self._settings.drain_timeout_s + 10
        while any(p.is_alive() for p in self._processes):
            while self._forwarded < len(self._signals):
                self._forwarded += 1
                for process in self._processes:
                    _signal(process, signal.SIGTERM)
            if time.monotonic() > deadline:
                log.error("workers still running 10 s past the drain timeout: killing them")
                for process in self._processes:
                    _signal(process, signal.SIGKILL)
                break
            time.sleep(_POLL_S)
        for process in self._processes:
            process.join(timeout=5)
            _forget(process.pid)
        return 0

    def _stop_all(self) -> None:
        self._ready.set(0)
        self._socket.close()
        for process in self._processes:
            _signal(process, signal.SIGTERM)
        for process in self._processes:
            process.join(timeout=self._settings.drain_grace_s + self._settings.drain_timeout_s + 5)
            if process.is_alive():
                _signal(process, signal.SIGKILL)
                process.join(timeout=5)
            _forget(process.pid)


def _signal(process: BaseProcess, sig: int) -> None:
    if process.pid is not None and process.is_alive():
        try:
            os.kill(process.pid, sig)
        except ProcessLookupError:  # exited between the check and the signal
            pass


def _forget(pid: int | None) -> None:
    """A dead process's live gauges (queue depth, readiness) leave the sums."""
    from prometheus_client import multiprocess

    if pid is not None and os.environ.get(MULTIPROCESS_DIR):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def _worker(settings: Settings, bound: socket.socket, started: Event) -> None:
    os.setpgrp()  # signals come from the supervisor alone
    stop_after = settings.drain_grace_s + settings.drain_timeout_s + 5
    watch = threading.Thread(target=_stop_with_parent, args=(os.getppid(), stop_after), daemon=True, name="bioner-parent-watch")
    watch.start()
    from service.cli import serve

    sys.exit(serve(settings, sockets=[bound], on_started=started.set))


def _stop_with_parent(parent: int, stop_after: float) -> None:
    """A worker whose supervisor was killed drains and exits instead of holding the port; one
    that has not exited by the end of its drain timeout (a signal lost while it was starting)
    is ended."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(stop_after)
    os._exit(1)
