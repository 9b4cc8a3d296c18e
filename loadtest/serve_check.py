"""Does ``POST /ner`` answer exactly what ``bioner evaluate`` decodes, on real texts?

Starts the real service on a bundle, sends a corpus's texts concurrently (so they share batches
with each other), and compares every text's spans with the evaluation path's decoding of the
same bundle (ONNX Runtime, one text batch at a time, the bundle's decoding: CRF transitions
included). Also reports how many served spans match a gold span exactly, offsets included.

    python loadtest/serve_check.py --model runs/imbalance-bundles/ncbi-crf \
        --texts ../shared/data/ncbi-disease/devel.tsv --limit 500
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import start_service  # noqa: E402
from harness import stop_service, verdict  # noqa: E402

from service.bundle_format import pipeline_for  # noqa: E402
from service.corpora import read_corpus  # noqa: E402
from service.runtime.bundle import load_bundle  # noqa: E402
from service.runtime.session import OnnxSession  # noqa: E402

Spans = list[tuple[int, int, str]]


async def serve_all(url: str, texts: list[str], per_request: int, concurrency: int) -> list[Spans]:
    chunks = [texts[i : i + per_request] for i in range(0, len(texts), per_request)]
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:

        async def one(chunk: list[str]) -> list[Spans]:
            async with gate:
                response = await client.post("/ner", json={"texts": chunk})
            response.raise_for_status()
            return [[(e["start"], e["end"], e["label"]) for e in ents] for ents in response.json()["entities"]]

        answers = await asyncio.gather(*(one(c) for c in chunks))
    return [spans for answer in answers for spans in answer]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--texts", type=Path, required=True, help="corpus the readers understand (gold spans used for the offset check)")
    parser.add_argument("--separator", default=" ", help="column files: token separator ('' for Chinese)")
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--per-request", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    docs = read_corpus(args.texts, None, args.separator)[: args.limit]
    texts = [d.text for d in docs]
    bundle = load_bundle(args.model)
    pipeline = pipeline_for(bundle.serving, bundle.encoder, bundle.scheme, bundle.pad_id)
    decoded = pipeline.predict(texts, OnnxSession(bundle.onnx_path, len(bundle.scheme), intra_op_threads=args.threads).run)
    expected = [[(e.start, e.end, e.label) for e in ents] for ents in decoded]

    proc, url, _ = start_service(args.model, args.threads, {})
    try:
        model = httpx.get(f"{url}/model").json()
        served = asyncio.run(serve_all(url, texts, args.per_request, args.concurrency))
    finally:
        stop_service(proc)

    differing = [i for i, (a, b) in enumerate(zip(served, expected)) if a != b]
    gold = [{(s.start, s.end, s.label) for s in d.spans} for d in docs]
    report = {
        "model": str(args.model),
        "decoding": model["decoding"],
        "texts": len(texts),
        "characters": sum(len(t) for t in texts),
        "served_spans": sum(len(s) for s in served),
        "texts_differing_from_evaluate": len(differing),
        "first_differences": [{"text": i, "served": served[i], "evaluate": expected[i]} for i in differing[:3]],
        "served_spans_equal_to_a_gold_span": sum(len(set(s) & g) for s, g in zip(served, gold)),
        "gold_spans": sum(len(g) for g in gold),
        "served_texts_slice_exactly": all(0 <= a < b <= len(t) for spans, t in zip(served, texts) for a, b, _ in spans),
    }
    verdict(report, not differing and len(served) == len(texts) and report["served_texts_slice_exactly"])


if __name__ == "__main__":
    main()
