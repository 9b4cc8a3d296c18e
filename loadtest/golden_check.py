"""Cross-machine check: does this machine give the bundle's golden answers, directly and when served?

Run it on every node type a lab deploys to (and on a GPU node with ``--provider cuda``). It
compares, against the bundle's ``golden.json``:
1. the synchronous path (``bioner check``: ONNX Runtime on this CPU or GPU, no batcher);
2. a real server on loopback, the golden texts sent concurrently ``--rounds`` times, so each text
   shares batches with different batch-mates every round.
Writes one JSON report naming the CPU model and the instruction sets int8 kernels dispatch on.

    python loadtest/golden_check.py --out loadtest/results/golden-$(hostname).json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import httpx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import start_service  # noqa: E402
from harness import ROOT, stop_service, verdict  # noqa: E402

from service.app import build_engine  # noqa: E402
from service.decoding.aggregate import Entity  # noqa: E402
from service.metrics import Metrics  # noqa: E402
from service.runtime.golden import compare, read_golden  # noqa: E402
from service.settings import Settings  # noqa: E402


async def served(url: str, texts: list[str], rounds: int) -> list[list[list[Entity]]]:
    """Every round: all golden texts at once, in a different order, answers put back in order."""
    answers = []
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        for r in range(rounds):
            order = list(range(len(texts)))
            order = order[r % len(order) :] + order[: r % len(order)]
            responses = await asyncio.gather(*(client.post("/ner", json={"text": texts[i]}) for i in order))
            round_answers: list[list[Entity]] = [[] for _ in texts]
            for i, response in zip(order, responses):
                response.raise_for_status()
                round_answers[i] = [Entity(e["start"], e["end"], e["label"], e["score"], e["text"]) for e in response.json()["entities"]]
            answers.append(round_answers)
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "bioner-minilm-jnlpba")
    parser.add_argument("--provider", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    golden = read_golden(args.model)
    if golden is None:
        raise SystemExit(f"{args.model} has no golden.json")
    settings = Settings(model_path=args.model, provider=args.provider, self_check=False, max_text_chars=1000)
    engine = build_engine(settings, Metrics())
    direct = compare(golden, engine.recognize_sync)
    proc, url, _ = start_service(args.model, 0, {"BIONER_PROVIDER": args.provider, "BIONER_MAX_WAIT_MS": "5"})
    try:
        rounds = asyncio.run(served(url, golden.texts, args.rounds))
    finally:
        stop_service(proc)
    over_http = [compare(golden, lambda texts, answers=answers: answers) for answers in rounds]
    report: dict[str, Any] = {
        "model": str(args.model),
        "provider": engine.info.provider,
        "onnxruntime": ort.__version__,
        "cpu": direct.cpu,
        "golden_made_on": golden.made_on,
        "direct": {k: v for k, v in direct.as_dict().items() if k not in ("cpu", "made_on")},
        "served_rounds": [
            {"passed": r.passed, "texts_differing": r.texts_differing, "max_score_diff": r.max_score_diff} for r in over_http
        ],
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    verdict(report, direct.passed and all(r.passed for r in over_http))


if __name__ == "__main__":
    main()
