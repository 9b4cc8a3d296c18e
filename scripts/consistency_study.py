"""Which rule for one type per name within a text (issue #14): the variants tried before
``first_mention`` was chosen, on each model's dev split, from one decoding pass per model.

Every variant rewrites the decoded entities of one text (exact character match of the name):

- ``majority``: each mention takes its name's most frequent type, ties to the type met first;
- ``majority, ties unchanged``: the same, leaving a name whose top types tie as it was;
- ``score-weighted majority``: votes weighted by the mentions' scores;
- ``first mention``: each mention takes its name's first type, decoded by the service's own rule
  (``consistency: first_mention``) from the same logits;
- ``propagate``: also tag unlabelled occurrences of a name found elsewhere in the text (names of at
  least ``min_len`` characters found with a score of at least 0.8).

It also counts, in the gold spans, the names with more than one type within a document, and for
``first mention`` how many retyped spans became right and how many wrong.

    python scripts/consistency_study.py --models models/bioner-minilm-jnlpba models/bioner-minilm-l3-jnlpba \
        --data ../shared/data/jnlpba/train --out docs/measured/jnlpba-consistency-dev.json
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from service.bundle_format import TOKENIZER_FILE, pipeline_for, read_serving
from service.corpora.load import split_dev
from service.corpora.scoring import span_scores
from service.decoding.consistency import Consistency
from service.decoding.windows import TextEncoder
from train.config import split_seed_of
from train.data import read_all
from train.evaluate_cli import load_runner

Found = tuple[int, int, str, float]  # start, end, label, score
Rule = Callable[[str, list[Found]], list[Found]]


def majority(text: str, found: list[Found], weighted: bool = False, ties_unchanged: bool = False) -> list[Found]:
    votes: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for a, b, label, score in found:
        votes[text[a:b]][label] += score if weighted else 1.0
    out = []
    for a, b, label, score in found:
        ranked = sorted(votes[text[a:b]].items(), key=lambda item: -item[1])  # stable: ties stay in the order met
        tied = len(ranked) > 1 and ranked[0][1] == ranked[1][1]
        out.append((a, b, label if tied and ties_unchanged else ranked[0][0], score))
    return out


def occurrences(text: str, name: str) -> Iterator[tuple[int, int]]:
    for match in re.finditer(re.escape(name), text):
        a, b = match.span()
        if (a == 0 or not text[a - 1].isalnum()) and (b == len(text) or not text[b].isalnum()):
            yield a, b


def propagate(text: str, found: list[Found], min_len: int, min_score: float = 0.8) -> list[Found]:
    taken = [(a, b) for a, b, _, _ in found]
    added: list[Found] = []
    named: dict[str, str] = {}
    for a, b, label, score in found:
        if score >= min_score:
            named.setdefault(text[a:b], label)
    for name, label in named.items():
        if len(name) < min_len or not any(c.isalpha() for c in name):
            continue
        for a, b in occurrences(text, name):
            if not any(a < y and x < b for x, y in taken):
                added.append((a, b, label, 0.0))
                taken.append((a, b))
    return sorted(found + added)


RULES: dict[str, Rule] = {
    "majority": majority,
    "majority, ties unchanged": lambda t, f: majority(t, f, ties_unchanged=True),
    "score-weighted majority": lambda t, f: majority(t, f, weighted=True),
    "propagate, names of 2+ characters": lambda t, f: propagate(t, f, 2),
    "propagate, names of 4+ characters": lambda t, f: propagate(t, f, 4),
}


def study(model: Path, data: list[str], fraction: float) -> dict[str, Any]:
    serving = read_serving(model)
    docs = read_all(data, None, " ")
    _, docs = split_dev(docs, fraction, split_seed_of(serving.extra.get("train_config") or {}, None))
    run, scheme = load_runner(model)
    pipeline = pipeline_for(serving, TextEncoder.from_file(model / TOKENIZER_FILE), scheme, consistency=Consistency.NONE)
    texts = [d.text for d in docs]
    plan = pipeline.plan(texts)
    logits = pipeline.run(run, plan)
    found = [[(e.start, e.end, e.label, e.score) for e in ents] for ents in pipeline.finish(plan, logits)]
    served = pipeline.finish(plan, logits, pipeline.options(consistency=Consistency.FIRST_MENTION))  # the service's own rule
    first = [[(e.start, e.end, e.label, e.score) for e in ents] for ents in served]
    gold = [[(s.start, s.end, s.label) for s in d.spans] for d in docs]

    def f1(answers: list[list[Found]]) -> dict[str, float]:
        micro = span_scores(gold, [[a[:3] for a in ents] for ents in answers])["micro"]
        return {k: round(micro[k], 4) for k in ("precision", "recall", "f1")}

    rows = {"as decoded": f1(found), **{name: f1([rule(t, f) for t, f in zip(texts, found)]) for name, rule in RULES.items()}}
    rows["first mention (the served rule)"] = f1(first)
    right = wrong = neither = 0
    for own, retyped, spans in zip(found, first, gold):
        truth = {(a, b): label for a, b, label in spans}
        for before, after in zip(own, retyped):  # the rule moves no boundary: the same spans, in order
            if before[2] != after[2]:
                expected = truth.get(before[:2])
                right += expected == after[2]
                wrong += expected == before[2]
                neither += expected not in (after[2], before[2])
    names = mixed = 0
    for doc in docs:
        types: dict[str, set[str]] = defaultdict(set)
        for s in doc.spans:
            types[doc.text[s.start : s.end]].add(s.label)
        names, mixed = names + len(types), mixed + sum(len(v) > 1 for v in types.values())
    return {
        "documents": len(docs),
        "rules": rows,
        "first_mention_retyped": {"now_right": right, "now_wrong": wrong, "neither": neither},
        "gold_names_with_several_types_in_a_document": f"{mixed} of {names}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", type=Path, required=True)
    parser.add_argument("--data", nargs="+", required=True)
    parser.add_argument("--dev-fraction", type=float, default=0.1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    report = {str(m): study(m, args.data, args.dev_fraction) for m in args.models}
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
