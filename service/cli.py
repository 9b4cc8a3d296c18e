"""``bioner serve`` (this package) and ``bioner train|pretrain|evaluate|export`` (the ``train`` extra)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from service.settings import Settings


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser("serve", help="run the HTTP service", description="Flags override BIONER_* environment variables.")
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        help_text = f"{field.description or ''} [env BIONER_{name.upper()}]"
        if field.annotation is bool:
            serve.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            serve.add_argument(flag, default=None, help=help_text, dest=name)
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    overrides = {k: v for k, v in vars(args).items() if k in Settings.model_fields and v is not None}
    try:
        settings = Settings(**overrides)
        settings.named_models()  # a bad models list fails here, once, not in every worker
    except (ValidationError, ValueError) as exc:  # one line, as for a bad bundle: "setting: why"
        print(f"bioner: cannot start: {_problems(exc)}", file=sys.stderr)
        return 2
    if settings.workers > 1:
        from service.workers import supervise

        return supervise(settings)
    return serve(settings)


def _problems(exc: Exception) -> str:
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return str(exc)
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors())


def serve(settings: Settings, sockets: list[socket.socket] | None = None, on_started: Callable[[], None] | None = None) -> int:
    """One server process: load every model, then serve until SIGTERM (on ``sockets`` a
    supervisor bound, when it runs several of these; ``on_started`` once it serves). Exit
    status 2: the models would not load."""
    import uvicorn

    from service.app import build_registry, create_app
    from service.errors import BundleError
    from service.logs import configure_logging
    from service.metrics import Metrics
    from service.shutdown import DrainingServer

    configure_logging(settings.log_level, settings.log_format)
    metrics = Metrics()
    try:
        models = build_registry(settings, metrics)
        app = create_app(settings, metrics=metrics, registry=models)
    except (BundleError, ValueError) as exc:
        print(f"bioner: cannot start: {exc}", file=sys.stderr)
        return 2
    if settings.metrics_port is not None and sockets is None:  # several workers: the supervisor serves it
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, settings.metrics_host, registry=metrics.registry)
    # uvicorn drains on SIGTERM, then re-raises the signal; with this no-op handler in place the
    # re-raise lands here and the process exits 0: a planned stop is not a crash to supervisors.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,
        timeout_graceful_shutdown=int(settings.drain_timeout_s) + 1,
        limit_concurrency=settings.max_connections,
        access_log=False,
    )
    DrainingServer(config, app, settings.drain_grace_s, settings.drain_timeout_s, on_started).run(sockets=sockets)
    if models.drain_expired:  # an inference thread may still hang: do not wait to join it
        logging.shutdown()
        os._exit(0)
    return 0


def _add_check(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = sub.add_parser(
        "check",
        help="answer the bundle's golden texts on this machine and compare",
        description="Exit 0 when every golden text gets the bundle's expected spans (scores within tolerance), 1 when not.",
    )
    check.add_argument("--model-path", type=Path, default=None, help="bundle folder (default: the committed model)")
    check.add_argument("--provider", choices=["cpu", "cuda"], default="cpu")
    check.add_argument("--json", type=Path, default=None, help="also write the full report here")
    check.set_defaults(handler=_check)


def _check(args: argparse.Namespace) -> int:
    import json

    from service.app import build_engine
    from service.errors import BundleError
    from service.metrics import Metrics
    from service.runtime.golden import GoldenError, compare, read_golden

    # Request limits play no part in the check: a small text limit keeps any bundle's window size valid.
    overrides = {"self_check": False, "provider": args.provider, "max_text_chars": 1000}
    if args.model_path:
        overrides["model_path"] = args.model_path
    settings = Settings(**overrides)
    try:
        engine = build_engine(settings, Metrics())
    except (BundleError, ValueError) as exc:
        print(f"bioner check: {exc}", file=sys.stderr)
        return 2
    try:
        golden = read_golden(settings.model_path)
    except GoldenError as exc:
        print(f"bioner check: {exc}", file=sys.stderr)
        return 2
    if golden is None:
        print(f"bioner check: {settings.model_path} has no golden.json (bioner export writes one)", file=sys.stderr)
        return 2
    report = compare(golden, engine.recognize_sync)
    verdict = "PASSED" if report.passed else "FAILED"
    print(f"{verdict}: {report.texts - report.texts_differing}/{report.texts} golden texts with the expected spans")
    print(f"max score difference {report.max_score_diff:.2e} (tolerance {report.score_tolerance:.0e})")
    print(f"same spans as the fp32 reference: {report.agrees_with_fp32}/{report.texts}")
    print(f"this machine: {report.cpu.get('model')} [{' '.join(report.cpu.get('flags', []))}], provider {engine.info.provider}")
    print(f"golden made on: {report.made_on.get('cpu', {}).get('model', '?')}, graph {report.made_on.get('graph', '?')}")
    for line in report.differences:
        print(f"  {line}")
    if args.json is not None:
        args.json.write_text(json.dumps({**report.as_dict(), "provider": engine.info.provider}, indent=2), encoding="utf-8")
    return 0 if report.passed else 1


def _add_annotate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from service.documents.formats import WRITABLE
    from service.documents.offsets import OffsetUnit

    annotate = sub.add_parser(
        "annotate",
        help="annotate whole corpora: files in, one output file per input file",
        description="Inputs: folders (recursively), globs or files of .txt, JSON Lines, BioC XML/JSON, PubTator and PubMed XML "
        "(.xml.gz). A rerun skips inputs whose output exists; a killed run leaves no partial output.",
    )
    annotate.add_argument("inputs", nargs="+")
    annotate.add_argument("--output", "-o", type=Path, required=True, help="output folder")
    annotate.add_argument("--format", choices=[f.value for f in WRITABLE], default="jsonl", help="output format")
    annotate.add_argument("--offsets", choices=[u.value for u in OffsetUnit], default="codepoint")
    annotate.add_argument("--model-path", type=Path, default=None, help="default: the committed bundle")
    annotate.add_argument(
        "--workers", type=int, default=0, help="processes (Ray: actors), each with its own model; 0: one per core (measured fastest)"
    )
    annotate.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads per process (0: cores / workers)")
    annotate.add_argument("--batch-size", type=int, default=16)
    annotate.add_argument("--drop-existing", action="store_true", help="remove the input's own annotations and relations")
    annotate.add_argument("--ray", action="store_true", help="run on Ray Data (the bulk extra): an actor pool, the model once per actor")
    annotate.add_argument("--ray-address", default=None, help="a running cluster (default: start a local Ray)")
    annotate.add_argument("--no-progress", action="store_true")
    annotate.add_argument("--json", type=Path, default=None, help="write the run's totals and rates here")
    annotate.set_defaults(handler=_annotate)


def _annotate(args: argparse.Namespace) -> int:
    from service.bulk.annotator import Options
    from service.bulk.files import claim_output, plan_jobs, remove_partials
    from service.bulk.local import run_local
    from service.bundle_format import SERVING_FILE
    from service.documents.formats import Format
    from service.documents.offsets import OffsetUnit
    from service.runtime.bundle import file_sha256
    from service.settings import default_model_path

    workers = args.workers or os.cpu_count() or 1
    threads = args.threads or max(1, (os.cpu_count() or 1) // workers)
    options = Options(
        args.model_path or default_model_path(),
        Format(args.format),
        OffsetUnit(args.offsets),
        not args.drop_existing,
        threads,
        args.batch_size,
    )
    jobs = plan_jobs(args.inputs, args.output, options.output_format)
    serving = options.model_path / SERVING_FILE
    made_with = {
        "model_sha256": file_sha256(options.model_path / "model.onnx"),
        # the same graph may ship with other decoding defaults (1.5.0 and 1.6.0): they decide the answers too
        "serving_sha256": file_sha256(serving) if serving.exists() else None,
        "format": options.output_format.value,
        "offsets": options.offsets.value,
        "keep_existing": options.keep_existing,
    }
    try:
        claim_output(args.output, made_with)
    except ValueError as exc:
        print(f"bioner annotate: {exc}", file=sys.stderr)
        return 2
    if removed := remove_partials(args.output):
        print(f"removed {removed} partial files a killed run left", file=sys.stderr)
    if args.ray:
        from service.bulk.on_ray import run_on_ray

        totals = run_on_ray(jobs, options, workers, args.ray_address)
    else:
        totals = run_local(jobs, options, workers, progress=not args.no_progress)
    summary = totals.as_dict()
    print(json.dumps({k: v for k, v in summary.items() if k != "failed"}, indent=2, default=str))
    for failure in totals.failed:
        print(f"failed: {failure}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    return 1 if totals.failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bioner", description="Biomedical NER service and training tools")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_serve(sub)
    _add_check(sub)
    _add_annotate(sub)
    try:
        from train.cli import add_train_commands
    except ImportError as exc:  # the train extra is optional
        missing = str(exc)

        def _no_train(args: argparse.Namespace) -> int:
            print(f"bioner {args.command}: install the train extra (pip install '.[train]'): {missing}", file=sys.stderr)
            return 2

        for name in ("train", "pretrain", "train-joint", "evaluate", "export", "export-joint"):
            sub.add_parser(name, help=f"{name} (needs the train extra)").set_defaults(handler=_no_train)
    else:
        add_train_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from service.workers import take_metrics_dir

    take_metrics_dir()  # only ``serve --workers`` shares metrics through files; it sets the folder itself
    args = build_parser().parse_args(argv)
    if args.command not in ("serve", "check"):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.handler(args))
