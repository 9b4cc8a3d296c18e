"""Side-by-side benchmark on one machine, same texts, one run: what users run today vs the service.

1. transformers ``pipeline("token-classification")`` on PyTorch with the same fine-tuned weights
   (``--checkpoint``; or, with ``--pipeline-base``, the base encoder under an untrained head, for its
   speed alone; skipped with a message without the train extra or either), at its best setting:
   ``aggregation_strategy="first"`` with the model's own training window and stride.
2. a raw ONNX Runtime session on the same bundle: pre-tokenised windows, length-sorted batches,
   no HTTP, no queue: the ceiling for this model on this machine.
3. the service over HTTP (a real server process) at client concurrencies 1, 4, 16, 64 with the
   micro-batcher on, and at 16 with batching off (max batch size 1);
   With ``--compare-env`` (once per configuration), other service configurations (a worker
   layout, inference lanes) are timed at 16 beside it, in the same run;
4. the service under an open-loop load: Poisson arrivals at stated shares of the capacity
   measured in 3 (25%, 50%, 65%, 80%, 90% by default), latency counted from each request's
   scheduled arrival, so a slow server cannot slow the offered load down (no coordinated omission).

Reports texts/s, tokens/s, latency p50/p95/p99, mean batch size, server peak RSS, strict span
F1 on the same texts, tokens of model work per text token, the ratios service/pipeline and
service/raw-ORT, the latency curve with its knee, and time to ready, as a Markdown table and a
JSON file. ``--max-length``, ``--stride`` and ``--window-align`` set the window plan of the raw
session and the service alike (default: the bundle's). Loopback only.

    python loadtest/bench.py --model models/bioner-minilm-jnlpba --checkpoint runs/jnlpba-minilm \
        --texts ../shared/data/jnlpba/train --limit 300 --out loadtest/results
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (  # noqa: E402
    ROOT,
    add_common_args,
    cpu_model,
    cpu_seconds,
    histogram,
    metric,
    process_tree,
    service_env,
    stop_service,
    write_report,
)

sys.path.insert(0, str(ROOT))

from service.bundle_format import pipeline_for, read_serving  # noqa: E402
from service.decoding.pipeline import pad_windows  # noqa: E402
from service.decoding.token_types import TokenTypes  # noqa: E402
from service.decoding.windows import Align  # noqa: E402
from service.runtime.bundle import load_bundle  # noqa: E402
from service.runtime.session import OnnxSession  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.workers import inference_threads  # noqa: E402

Spans = list[tuple[int, int, str]]


def dev_files(folder: Path, fraction: float, seed: int) -> list[Path]:
    """The documents ``bioner train`` carves off as dev (same order, shuffle and seed): texts no
    model trained with the defaults has seen, so the F1 column means something."""
    files = sorted(folder.glob("*.txt"))
    if not fraction:
        return files
    order = list(range(len(files)))
    random.Random(seed).shuffle(order)
    keep = set(order[: max(1, int(round(len(files) * fraction)))])
    return [f for i, f in enumerate(files) if i in keep]


def load_corpus(folder: Path, limit: int, fraction: float = 0.1, seed: int = 13) -> tuple[list[str], list[Spans]]:
    texts, gold = [], []
    for txt in dev_files(folder, fraction, seed)[:limit]:
        texts.append(txt.read_text(encoding="utf-8"))
        spans = []
        ann = txt.with_suffix(".ann")
        for line in ann.read_text(encoding="utf-8").splitlines() if ann.exists() else []:
            if line.startswith("T") and ";" not in line.split("\t")[1]:
                label, start, end = line.split("\t")[1].split()
                spans.append((int(start), int(end), label))
        gold.append(spans)
    return texts, gold


def f1(gold: list[Spans], predicted: list[Spans]) -> float:
    g = {(i, *s) for i, doc in enumerate(gold) for s in doc}
    p = {(i, *s) for i, doc in enumerate(predicted) for s in doc}
    tp = len(g & p)
    return 2 * tp / (len(g) + len(p)) if g or p else 1.0


def percentiles(latencies: list[float]) -> dict[str, float]:
    if len(latencies) < 2:
        return {"p50": latencies[0] if latencies else 0.0, "p95": 0.0, "p99": 0.0}
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"p50": q[49], "p95": q[94], "p99": q[98]}


# ---------------------------------------------------------------------------------- raw ONNX Runtime
def bench_raw_ort(model: Path, texts: list[str], threads: int, batch_size: int, window: dict[str, Any]) -> dict[str, Any]:
    """The service's own windows (same plan), length-sorted into batches: the ceiling for this model
    (ONNX Runtime alone, with its own default of spinning threads: nothing else wants the cores)."""
    bundle = load_bundle(model)
    session = OnnxSession(bundle.onnx_path, len(bundle.scheme), intra_op_threads=threads, spinning=True)
    pipeline = pipeline_for(bundle.serving, bundle.encoder, bundle.scheme, bundle.pad_id, **window)
    plan = pipeline.plan(texts)  # pre-tokenised: not timed
    rows = list(plan.rows)
    ordered = sorted(rows, key=len)
    batches = [pad_windows(ordered[i : i + batch_size], bundle.pad_id) for i in range(0, len(ordered), batch_size)]
    session.run(*batches[0])
    cpu, started = time.process_time(), time.perf_counter()
    for ids, mask in batches:
        session.run(ids, mask)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    found = pipeline.finish(plan, pipeline.run(session.run, plan, batch_size))
    predicted = [[(e.start, e.end, e.label) for e in entities] for entities in found]
    return {
        "seconds": seconds,
        "texts_per_s": len(texts) / seconds,
        "cpu_ms_per_text": 1000 * cpu / len(texts),
        "tokens": plan.tokens,
        "windows": len(rows),
        "work_per_token": plan.work_tokens / plan.tokens,
        "padded_per_token": sum(ids.size for ids, _ in batches) / plan.tokens,
        "window": {"max_length": pipeline.window.max_length, "stride": pipeline.window.stride, "align": pipeline.window.align.value},
        "predicted": predicted,
        "batch_size": batch_size,
    }


# ---------------------------------------------------------------------------------- transformers pipeline
def bench_pipeline(
    checkpoint: Path | None, texts: list[str], threads: int, max_length: int, stride: int, labels: dict[int, str] | None = None
) -> dict[str, Any] | str:
    """The pipeline on ``checkpoint``; with ``labels``, ``checkpoint`` is a base encoder under a fresh head of those labels.

    The fresh head times the same network (what a fine-tuned checkpoint of this architecture costs)
    when no fine-tuned PyTorch weights are at hand; its answers are noise, so its F1 is not scored.
    """
    if checkpoint is None or not (checkpoint / "config.json").exists():
        return "skipped: no PyTorch checkpoint given (--checkpoint or --pipeline-base)"
    try:
        import torch
        from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline
    except ImportError:
        return "skipped: the train extra (torch, transformers) is not installed"
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint, model_max_length=max_length)
    head = {"id2label": labels, "label2id": {v: k for k, v in labels.items()}} if labels else {}
    model = AutoModelForTokenClassification.from_pretrained(checkpoint, **head)
    ner = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="first", stride=stride, device=-1)
    ner(texts[0])
    latencies, predicted = [], []
    cpu, started = time.process_time(), time.perf_counter()
    for text in texts:
        t0 = time.perf_counter()
        out = ner(text)
        latencies.append(time.perf_counter() - t0)
        predicted.append([(int(e["start"]), int(e["end"]), e["entity_group"]) for e in out])
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    result = {
        "seconds": seconds,
        "texts_per_s": len(texts) / seconds,
        "cpu_ms_per_text": 1000 * cpu / len(texts),
        "predicted": predicted,
        **percentiles(latencies),
    }
    return {**result, "untrained_head": True, "base": str(checkpoint)} if labels else result


# ---------------------------------------------------------------------------------- the service over HTTP
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of the server: with ``--workers``, the supervisor's and every live worker's added."""
    total = 0.0
    for member in process_tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except FileNotFoundError:  # exited meanwhile
            continue
        total += int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    return total


def start_service(
    model: Path, threads: int, extra: dict[str, str], cpus: Sequence[int] | None = None
) -> tuple[subprocess.Popen[bytes], str, float]:
    """The server as a process of its own (pinned to ``cpus`` when given: its workers inherit that),
    running ``threads`` inferences threads in all (0: the service's own choice), split over its
    workers and lanes unless ``extra`` sets ``BIONER_INTRA_OP_THREADS`` itself."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "BIONER_INTRA_OP_THREADS"}  # this run's, not the shell's
    env |= {"BIONER_MODEL_PATH": str(model), "BIONER_PORT": str(port), "BIONER_LOG_LEVEL": "warning", **extra}
    if threads and "BIONER_INTRA_OP_THREADS" not in extra:
        layout = {k: int(extra[f"BIONER_{k.upper()}"]) for k in ("workers", "inference_lanes") if f"BIONER_{k.upper()}" in extra}
        env["BIONER_INTRA_OP_THREADS"] = str(inference_threads(Settings.model_construct(**layout), threads) or threads)
    started = time.perf_counter()
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus is not None else None
    proc = subprocess.Popen([sys.executable, "-m", "service", "serve"], env=env, preexec_fn=pin)
    url = f"http://127.0.0.1:{port}"
    while True:
        if proc.poll() is not None:
            raise RuntimeError("service exited during startup")
        try:  # bioner_ready: 1 once every worker is (one worker's /ready speaks for itself alone)
            ready = httpx.get(f"{url}/ready", timeout=1).status_code == 200
            if ready and metric(httpx.get(f"{url}/metrics").text, r"^bioner_ready (\S+)$"):
                return proc, url, time.perf_counter() - started
        except httpx.TransportError:
            pass
        time.sleep(0.02)


async def drive(url: str, texts: list[str], concurrency: int, per_request: int = 1, server_pid: int | None = None) -> dict[str, Any]:
    """``texts`` through ``/ner`` by ``concurrency`` clients, ``per_request`` texts in each request
    (one: ``{"text"}``; more: ``{"texts"}``, as a corpus client sends them); latencies per request.

    With ``server_pid``, also the CPU the server process and this client spent per text: on a
    machine they share, what the service costs beyond the model, and what the client costs."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    chunks = [range(lo, min(lo + per_request, len(texts))) for lo in range(0, len(texts), per_request)]
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=300) as client:
        await client.post("/ner", json={"text": texts[0]})
        before = (await client.get("/metrics")).text
        gate = asyncio.Semaphore(concurrency)
        latencies: list[float] = [0.0] * len(chunks)
        predicted: list[Spans] = [[] for _ in texts]
        failures = 0

        async def one(k: int) -> None:
            nonlocal failures
            chunk = chunks[k]
            body = {"text": texts[chunk[0]]} if per_request == 1 else {"texts": [texts[i] for i in chunk]}
            async with gate:
                t0 = time.perf_counter()
                response = await client.post("/ner", json=body)
                latencies[k] = time.perf_counter() - t0
                if response.status_code != 200:
                    failures += 1
                    return
                found = response.json()["entities"]
                for i, entities in zip(chunk, [found] if per_request == 1 else found):
                    predicted[i] = [(e["start"], e["end"], e["label"]) for e in entities]

        server_cpu = cpu_seconds(server_pid) if server_pid else 0.0
        client_cpu, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(k) for k in range(len(chunks))))
        seconds, client_cpu = time.perf_counter() - started, time.process_time() - client_cpu
        server_cpu = cpu_seconds(server_pid) - server_cpu if server_pid else float("nan")
        after = (await client.get("/metrics")).text
    rows = histogram(after, "bioner_batch_size_windows")[0] - histogram(before, "bioner_batch_size_windows")[0]
    batches = histogram(after, "bioner_batch_size_windows")[1] - histogram(before, "bioner_batch_size_windows")[1]
    padded = histogram(after, "bioner_batch_size_tokens")[0] - histogram(before, "bioner_batch_size_tokens")[0]
    return {
        "seconds": seconds,
        "texts_per_s": len(texts) / seconds,
        "failures": failures,
        "predicted": predicted,
        "mean_batch_windows": rows / batches if batches else 0.0,
        "padded_tokens": padded,  # positions the model computed, padding included
        "server_cpu_ms_per_text": 1000 * server_cpu / len(texts),
        "client_cpu_ms_per_text": 1000 * client_cpu / len(texts),
        **percentiles(latencies),
    }


async def open_loop(url: str, texts: list[str], rate: float, seconds: float, seed: int) -> dict[str, Any]:
    """Poisson arrivals at ``rate`` texts/s for ``seconds``; each latency runs from the scheduled
    arrival, so time the client spent late counts against the server, as a user would see it."""
    rng = random.Random(seed)
    arrivals, t = [], rng.expovariate(rate)
    while t < seconds:
        arrivals.append(t)
        t += rng.expovariate(rate)
    limits = httpx.Limits(max_connections=1024, max_keepalive_connections=64)
    latencies: list[float] = []
    failures = 0
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=300) as client:
        await client.post("/ner", json={"text": texts[0]})
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def one(i: int, at: float) -> None:
            nonlocal failures
            await asyncio.sleep(max(0.0, start + at - loop.time()))
            response = await client.post("/ner", json={"text": texts[i % len(texts)]})
            if response.status_code != 200:
                failures += 1
            else:
                latencies.append(loop.time() - start - at)

        await asyncio.gather(*(one(i, at) for i, at in enumerate(arrivals)))
        elapsed = loop.time() - start
    achieved = len(latencies) / elapsed
    return {"offered_per_s": rate, "requests": len(arrivals), "achieved_per_s": achieved, "failures": failures, **percentiles(latencies)}


def knee(curve: list[dict[str, Any]], factor: float = 2.0) -> float | None:
    """The highest load share before the first one whose p99 exceeds ``factor`` x the lightest load's p99."""
    if not curve:
        return None
    base = curve[0]["p99"]
    below = None
    for point in curve:
        if point["p99"] > factor * base or point["failures"]:
            return below
        below = point["share"]
    return below


def bench_service(
    model: Path,
    texts: list[str],
    threads: int,
    concurrencies: list[int],
    extra: dict[str, str],
    loads: Sequence[float] = (),
    load_seconds: float = 20.0,
    per_request: int = 1,
) -> dict[str, Any]:
    proc, url, ready_s = start_service(model, threads, extra)
    try:
        runs = {c: asyncio.run(drive(url, texts, c, per_request, proc.pid)) for c in concurrencies}
        out: dict[str, Any] = {"ready_seconds": ready_s, "runs": runs}
        if loads:
            capacity = max(r["texts_per_s"] for r in runs.values())
            curve = []
            for k, share in enumerate(loads):
                point = asyncio.run(open_loop(url, texts, share * capacity, load_seconds, seed=k))
                curve.append({"share": share, **point})
            out["open_loop"] = {"capacity_per_s": capacity, "seconds": load_seconds, "curve": curve, "knee_share": knee(curve)}
        out["peak_rss_mb"] = peak_rss_mb(proc.pid)
        return out
    finally:
        stop_service(proc)


# ---------------------------------------------------------------------------------- report
def cpu_cell(result: dict[str, Any]) -> str:
    """CPU milliseconds per text: the process's own, or the server's + the client's for the service."""
    if "server_cpu_ms_per_text" in result:
        return f"{result['server_cpu_ms_per_text']:.1f} + {result['client_cpu_ms_per_text']:.1f}"
    return f"{result['cpu_ms_per_text']:.1f}" if "cpu_ms_per_text" in result else "-"


def add_window_args(parser: argparse.ArgumentParser) -> None:
    """The window plan for the in-process session and the service alike (default: the bundle's)."""
    parser.add_argument("--max-length", type=int, default=None, help="window length for raw ORT and the service (default: bundle's)")
    parser.add_argument("--stride", type=int, default=None, help="window overlap for raw ORT and the service (default: bundle's)")
    parser.add_argument("--window-align", choices=["tokens", "sentences"], default=None, help="default: the bundle's")


def window_overrides(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str]]:
    """``add_window_args``' flags as ``pipeline_for`` keywords and as the service's BIONER_* settings."""
    window: dict[str, Any] = {}
    env: dict[str, str] = {}
    if args.max_length:
        window["max_length"], env["BIONER_MAX_LENGTH"] = args.max_length, str(args.max_length)
    if args.stride is not None:
        window["stride"], env["BIONER_STRIDE"] = args.stride, str(args.stride)
    if args.window_align:
        window["align"], env["BIONER_WINDOW_ALIGN"] = Align(args.window_align), args.window_align
    return window, env


def hf_config(folder: Path) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--checkpoint", type=Path, default=None, help="PyTorch checkpoint of the same weights (pipeline baseline)")
    parser.add_argument(
        "--pipeline-base",
        type=Path,
        default=None,
        help="without --checkpoint: time the pipeline on this base encoder under an untrained head of the bundle's labels "
        "(speed only); it must be the bundle's network, or --reference's (what labs run today, that a smaller model replaces)",
    )
    parser.add_argument(
        "--reference", type=Path, default=None, help="another bundle (the larger model a smaller one replaces): its raw ORT row too"
    )
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--dev-fraction", type=float, default=0.1, help="use the dev documents train carves off (0: all files)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--raw-batch-size", type=int, default=8)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--service-env", nargs="*", default=[], help="extra BIONER_*=value settings for the service runs")
    add_window_args(parser)
    parser.add_argument("--loads", type=float, nargs="*", default=[0.25, 0.5, 0.65, 0.8, 0.9], help="open-loop shares of capacity")
    parser.add_argument("--load-seconds", type=float, default=20.0, help="seconds of arrivals per open-loop load")
    parser.add_argument("--no-unbatched", action="store_true", help="skip the batching-off run")
    parser.add_argument(
        "--decode-alone", action="store_true", help="also run the service at c=16 decoding each request alone (decode batcher off)"
    )
    parser.add_argument(
        "--compare-env",
        nargs="+",
        action="append",
        default=[],
        help="another service configuration (BIONER_*=value ...), timed at c=16 in the same run; repeat for more: "
        "e.g. --compare-env BIONER_INFERENCE_LANES=2 --compare-env BIONER_WORKERS=2 BIONER_INTRA_OP_THREADS=1",
    )
    parser.add_argument(
        "--texts-per-request",
        type=int,
        default=0,
        help="also run the service at c=4 with this many texts in each request (a corpus client); 0: skip",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "loadtest" / "results")
    args = parser.parse_args()
    texts, gold = load_corpus(args.texts, args.limit, args.dev_fraction, args.seed)
    bundle = load_bundle(args.model)
    window, window_env = window_overrides(args)
    extra = {**service_env(args.service_env), **window_env}
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "threads": args.threads, "cpu": cpu_model()}, "texts": len(texts)}
    results["service_env"] = service_env(args.service_env)
    compares = [service_env(config) for config in args.compare_env]  # a typo fails now, not after the runs

    raw = bench_raw_ort(args.model, texts, args.threads, args.raw_batch_size, window)
    tokens = raw["tokens"]
    results["raw_ort"] = raw
    if args.reference:
        results["reference_raw_ort"] = bench_raw_ort(args.reference, texts, args.threads, args.raw_batch_size, window)
    labels, pipeline_network = None, "bundle"
    if args.checkpoint is None and args.pipeline_base is not None:
        networks = {"bundle": hf_config(args.model), **({"reference": hf_config(args.reference)} if args.reference else {})}
        config, base = networks["bundle"], hf_config(args.pipeline_base)
        shape = ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads")
        matching = [whose for whose, network in networks.items() if all(network.get(k) == base.get(k) for k in shape)]
        if not matching:
            raise SystemExit(f"--pipeline-base {args.pipeline_base} is neither the bundle's nor --reference's network ({', '.join(shape)})")
        pipeline_network = matching[0]
        labels = {int(k): v for k, v in config["id2label"].items()}
    pipe = bench_pipeline(
        args.checkpoint or args.pipeline_base, texts, args.threads, bundle.serving.window.max_length, bundle.serving.window.stride, labels
    )
    results["pipeline"] = pipe
    results["pipeline_network"] = pipeline_network  # "reference": the pipeline timed the network a smaller bundle replaces
    results["service"] = bench_service(args.model, texts, args.threads, args.concurrency, extra, args.loads, args.load_seconds)
    if not args.no_unbatched:
        results["service_unbatched"] = bench_service(args.model, texts, args.threads, [16], {**extra, "BIONER_MAX_BATCH_SIZE": "1"})
    if args.decode_alone:
        alone_env = {**extra, "BIONER_DECODE_BATCH_REQUESTS": "1"}
        results["service_decode_alone"] = bench_service(args.model, texts, args.threads, [16], alone_env)
    for k, compare in enumerate(compares):
        results[f"compare_env_{k}"] = compare
        results[f"service_compared_{k}"] = bench_service(args.model, texts, args.threads, [16], {**extra, **compare})
    if args.texts_per_request:
        results["service_grouped"] = bench_service(args.model, texts, args.threads, [4], extra, per_request=args.texts_per_request)

    rows: list[tuple[str, str, float, dict[str, Any] | None, str, float | None, str]] = []
    if isinstance(pipe, dict):
        name = "transformers pipeline (PyTorch, first)" + (", untrained head: speed only" if labels else "")
        name += f", the network of reference {args.reference.name}" if pipeline_network == "reference" else ""
        # the pipeline feeds token types of zeros: a model trained to read case runs uncased there
        uncased = args.checkpoint is not None and read_serving(args.checkpoint).token_types is not TokenTypes.NONE
        name += ", token types dropped: speed only" if uncased and not labels else ""
        scored = None if labels or uncased else f1(gold, pipe["predicted"])
        rows.append((name, "1", pipe["texts_per_s"], pipe, "-", scored, cpu_cell(pipe)))
    if "reference_raw_ort" in results:
        ref = results["reference_raw_ort"]
        name = f"raw ONNX Runtime, reference {args.reference.name}"
        rows.append((name, "-", ref["texts_per_s"], None, "-", f1(gold, ref["predicted"]), cpu_cell(ref)))
    name = f"raw ONNX Runtime (batches of {args.raw_batch_size})"
    rows.append((name, "-", raw["texts_per_s"], None, "-", f1(gold, raw["predicted"]), cpu_cell(raw)))
    labelled = [("service", "service, micro-batching", None), ("service_unbatched", "service, batching off", 16)]
    labelled += [("service_decode_alone", "service, each request decoded alone", 16)]
    labelled += [("service_grouped", f"service, {args.texts_per_request} texts per request (latency per request)", 4)]
    labelled += [(f"service_compared_{k}", f"service, {' '.join(config)}", 16) for k, config in enumerate(args.compare_env)]
    for key, name, only in labelled:
        for c, run in results.get(key, {}).get("runs", {}).items():
            if only is None or c == only:
                batch = f"{run['mean_batch_windows']:.2f}"
                rows.append((name, str(c), run["texts_per_s"], run, batch, f1(gold, run["predicted"]), cpu_cell(run)))

    single = results["service"]["runs"].get(1)
    at16 = results["service"]["runs"].get(16)
    w = raw["window"]
    lines = [
        f"{len(texts)} JNLPBA abstracts (dev split), {tokens} subword tokens; {results['machine']['cpu']}, "
        f"{os.cpu_count()} CPU cores, {args.threads} inference threads. Windows {w['max_length']} tokens, overlap {w['stride']}, "
        f"aligned to {w['align']}: {raw['work_per_token']:.3f} tokens of model work per text token "
        f"({raw['padded_per_token']:.3f} with padding in raw ORT's length-sorted batches)."
        + (f" Service settings: {' '.join(args.service_env)}." if args.service_env else ""),
        "",
        "| way | concurrency | texts/s | tokens/s | p50 ms | p95 ms | p99 ms | windows/batch | strict span F1 | CPU ms per text |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, conc, tps, lat, batch, score, cpu in rows:
        ms = (lambda k: f"{lat[k] * 1000:.0f}") if lat else (lambda k: "-")
        lines.append(
            f"| {name} | {conc} | {tps:.1f} | {tps * tokens / len(texts):.0f} | {ms('p50')} | {ms('p95')} | {ms('p99')} "
            f"| {batch} | {'-' if score is None else f'{score:.4f}'} | {cpu} |"
        )
    ratios = {}
    if at16:
        ratios["service16_over_raw_ort"] = at16["texts_per_s"] / raw["texts_per_s"]
        ratios["service16_padded_per_text_token"] = at16["padded_tokens"] / tokens
        ratios["raw_ort_padded_per_text_token"] = raw["padded_per_token"]
        if isinstance(pipe, dict):
            ratios["service16_over_pipeline"] = at16["texts_per_s"] / pipe["texts_per_s"]
        if single:
            ratios["p99_at_16_over_single_p50"] = at16["p99"] / single["p50"]
    for k in range(len(compares)):
        compared = results[f"service_compared_{k}"].get("runs", {}).get(16)
        if compared and at16:
            ratios[f"service16_compared_{k}_over_service16"] = compared["texts_per_s"] / at16["texts_per_s"]
        if compared and isinstance(pipe, dict):
            ratios[f"service16_compared_{k}_over_pipeline"] = compared["texts_per_s"] / pipe["texts_per_s"]
    if isinstance(pipe, dict):
        ratios["raw_ort_over_pipeline"] = raw["texts_per_s"] / pipe["texts_per_s"]
    if "reference_raw_ort" in results:
        ratios["raw_ort_over_reference_raw_ort"] = raw["texts_per_s"] / results["reference_raw_ort"]["texts_per_s"]
        if at16:
            ratios["service16_over_reference_raw_ort"] = at16["texts_per_s"] / results["reference_raw_ort"]["texts_per_s"]
    curve = results["service"].get("open_loop")
    if curve and single:
        at_half = min(curve["curve"], key=lambda p: abs(p["share"] - 0.5))
        ratios["open_loop_p99_at_50pct_over_single_p50"] = at_half["p99"] / single["p50"]
    ratios["peak_rss_mb"] = results["service"]["peak_rss_mb"]
    ratios["ready_seconds"] = results["service"]["ready_seconds"]
    results["ratios"] = ratios
    lines += ["", *[f"- {k}: {v:.2f}" for k, v in ratios.items()]]
    if curve:
        lines += [
            "",
            f"Open loop (Poisson arrivals, {curve['seconds']:.0f} s per load; capacity {curve['capacity_per_s']:.1f} texts/s "
            f"from the closed-loop runs above):",
            "",
            "| load | offered texts/s | achieved texts/s | p50 ms | p99 ms | failed |",
            "|---|---|---|---|---|---|",
        ]
        for point in curve["curve"]:
            lines.append(
                f"| {point['share']:.0%} | {point['offered_per_s']:.1f} | {point['achieved_per_s']:.1f} | "
                f"{point['p50'] * 1000:.0f} | {point['p99'] * 1000:.0f} | {point['failures']} |"
            )
        knee_share = curve["knee_share"]
        lines.append(
            f"\nKnee: p99 stays within 2x of its light-load value up to {knee_share:.0%} of capacity."
            if knee_share is not None
            else "\nKnee: p99 doubles already at the lightest load step."
        )
    if isinstance(pipe, str):
        lines.append(f"- pipeline: {pipe}")
    for section in ("raw_ort", "reference_raw_ort", "pipeline"):
        if isinstance(results.get(section), dict):
            results[section].pop("predicted", None)
    compared_keys = [f"service_compared_{k}" for k in range(len(compares))]
    for key in ("service", "service_unbatched", "service_decode_alone", "service_grouped", *compared_keys):
        for run in results.get(key, {}).get("runs", {}).values():
            run.pop("predicted", None)
    write_report(args.out, "bench", lines, results)


if __name__ == "__main__":
    main()
