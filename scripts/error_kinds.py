"""What a model's dev errors are made of (issue #14): the served answers (the bundle's own
decoding and consistency rule) against the gold spans of the dev split, each error in one kind:

- ``type``: the right span with the wrong type;
- ``boundary_fp`` / ``boundary_fn``: a predicted span overlapping a gold one with other bounds,
  and the gold spans such spans miss (most JNLPBA errors: "IL-2 receptor" against "IL-2");
- ``spurious``: a predicted span overlapping no gold span; ``missed``: a gold span no prediction touches;

and, for "long form (SHORT)" pairs whose long form is a gold span, how often the short form is
typed wrong while the long form is right (what an abbreviation rule could mend).

    python scripts/error_kinds.py --model models/bioner-minilm-jnlpba --data ../shared/data/jnlpba/train \\
        --out docs/measured/jnlpba-errors-dev.json
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from service.bundle_format import TOKENIZER_FILE, pipeline_for, read_serving
from service.corpora.load import split_dev
from service.decoding.windows import TextEncoder
from train.config import split_seed_of
from train.data import read_all
from train.evaluate_cli import load_runner

Span = tuple[int, int]


def kinds(gold: dict[Span, str], found: dict[Span, str], counts: Counter[str], confusions: Counter[str], bounds: Counter[str]) -> None:
    for span, label in found.items():
        overlapping = [g for g in gold if g[0] < span[1] and span[0] < g[1]]
        if span in gold:
            counts["right" if gold[span] == label else "type"] += 1
            if gold[span] != label:
                confusions[f"{gold[span]} -> {label}"] += 1
        elif overlapping:
            counts["boundary_fp"] += 1
            g = overlapping[0]
            side = "+".join(s for s, moved in (("start", span[0] != g[0]), ("end", span[1] != g[1])) if moved)
            bounds[f"{gold[g]}: {side} {'wider' if span[1] - span[0] > g[1] - g[0] else 'narrower'}"] += 1
        else:
            counts["spurious"] += 1
    for span in gold:
        if span not in found:
            counts["boundary_fn" if any(p[0] < span[1] and span[0] < p[1] for p in found) else "missed"] += 1


def abbreviations(text: str, gold: dict[Span, str], found: dict[Span, str], counts: Counter[str]) -> None:
    for match in re.finditer(r"\(([A-Za-z0-9-]{2,12})\)", text):
        short = match.span(1)
        longs = [g for g in gold if g[1] in (match.start() - 1, match.start())]
        if not longs or short not in gold:
            continue
        counts["pairs"] += 1
        if short not in found:
            counts["short_missed"] += 1
        elif found[short] != gold[short]:
            counts["short_typed_wrong"] += 1
            counts["short_wrong_long_right"] += found.get(longs[0]) == gold[longs[0]]


def study(model: Path, data: list[str], fraction: float) -> dict[str, Any]:
    serving = read_serving(model)
    _, docs = split_dev(read_all(data, None, " "), fraction, split_seed_of(serving.extra.get("train_config") or {}, None))
    run, scheme = load_runner(model)
    pipeline = pipeline_for(serving, TextEncoder.from_file(model / TOKENIZER_FILE), scheme)
    plan = pipeline.plan([d.text for d in docs])
    served = pipeline.finish(plan, pipeline.run(run, plan))
    counts: Counter[str] = Counter()
    confusions: Counter[str] = Counter()
    bounds: Counter[str] = Counter()
    abbr: Counter[str] = Counter()
    for doc, entities in zip(docs, served):
        gold = {(s.start, s.end): s.label for s in doc.spans}
        found = {(e.start, e.end): e.label for e in entities}
        kinds(gold, found, counts, confusions, bounds)
        abbreviations(doc.text, gold, found, abbr)
    return {
        "documents": len(docs),
        "gold_spans": sum(len(d.spans) for d in docs),
        "kinds": dict(counts),
        "type_confusions": dict(confusions.most_common()),
        "boundary_errors": dict(bounds.most_common()),
        "abbreviations": dict(abbr),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", nargs="+", required=True)
    parser.add_argument("--dev-fraction", type=float, default=0.1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    report = study(args.model, args.data, args.dev_fraction)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
