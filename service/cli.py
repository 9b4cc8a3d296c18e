"""``bioner serve`` (this package) and ``bioner train|pretrain|evaluate|export`` (the ``train`` extra)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from service.settings import Settings


def _add_serve(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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
    import uvicorn

    from service.app import build_engine, create_app
    from service.errors import BundleError
    from service.logs import configure_logging
    from service.metrics import Metrics
    from service.shutdown import DrainingServer

    overrides = {k: v for k, v in vars(args).items() if k in Settings.model_fields and v is not None}
    settings = Settings(**overrides)
    configure_logging(settings.log_level, settings.log_format)
    metrics = Metrics()
    try:
        engine = build_engine(settings, metrics)
        app = create_app(settings, engine=engine, metrics=metrics)
    except (BundleError, ValueError) as exc:
        print(f"bioner: cannot start: {exc}", file=sys.stderr)
        return 2
    if settings.metrics_port is not None:
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
    DrainingServer(config, app, settings.drain_grace_s, settings.drain_timeout_s).run()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bioner", description="Biomedical NER service and training tools")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_serve(sub)
    try:
        from train.cli import add_train_commands
    except ImportError as exc:  # the train extra is optional
        missing = str(exc)

        def _no_train(args: argparse.Namespace) -> int:
            print(f"bioner {args.command}: install the train extra (pip install '.[train]'): {missing}", file=sys.stderr)
            return 2

        for name in ("train", "pretrain", "evaluate", "export"):
            sub.add_parser(name, help=f"{name} (needs the train extra)").set_defaults(handler=_no_train)
    else:
        add_train_commands(sub)
    args = parser.parse_args(argv)
    if args.command != "serve":
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.handler(args))
