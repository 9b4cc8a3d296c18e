"""Two ``train-joint`` runs that group the corpora into heads differently, compared per corpus and type.

Issue #12 asks whether one head for both disease corpora beats one head each. The runs' heads
differ (``ncbi`` + ``bc5cdr`` against ``disease`` + ``chemical``), so the table is keyed by what
stays the same: each training file's dev split and its entity types. A head fed by several files
logs its dev report per file (``dev_by_source``); a file whose types are spread over several heads
(BC5CDR's Chemical and Disease) gets its micro scores rebuilt from the per-type counts.

    python scripts/regroup_table.py --a runs/joint2/joint --b runs/merge/joint
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from joint_table import epochs, kept  # the sibling script: runs and their kept epochs

from train.corpus_spec import parse_heads
from train.run_log import train_seconds

Counts = tuple[int, int, int]  # true positives, predicted, gold


def counts(report: dict[str, Any]) -> Counts:
    """Span counts behind a P/R/F1 report (P = tp/predicted, R = tp/gold, support = gold)."""
    gold = int(report["support"])
    tp = round(report["recall"] * gold)
    return tp, (round(tp / report["precision"]) if report["precision"] else 0), gold


def prf(c: Counts) -> tuple[float, float, float]:
    tp, pred, gold = c
    p, r = (tp / pred if pred else 0.0), (tp / gold if gold else 0.0)
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def shown(scores: tuple[float, float, float]) -> str:
    return " / ".join(f"{x:.4f}" for x in scores)


def record_of(run: Path, epoch: int) -> dict[str, Any]:
    """The run's kept epoch, or epoch ``epoch`` (0: kept): runs with the same schedule compare at any epoch."""
    if not epoch:
        return kept(run)
    found = [r for r in epochs(run) if r["epoch"] == epoch]
    if not found:
        raise SystemExit(f"{run}: no epoch {epoch} in metrics.jsonl")
    return found[0]


def by_file(run: Path, epoch: int = 0) -> dict[str, dict[str, Counts]]:
    """File (folder/name) -> type -> counts on that file's dev split, from the run's kept (or given) epoch."""
    record = record_of(run, epoch)
    config = json.loads((run / "serving.json").read_text(encoding="utf-8"))["train_config"]
    out: dict[str, dict[str, Counts]] = {}
    for head in parse_heads(config["corpora"]):
        for source in head.sources:
            reports = record.get("dev_by_source", {}).get(head.name, {})
            report = reports.get(source.key, record["dev"][head.name])
            file = source.key.split("@", 1)[0]
            for kind, scores in report["per_type"].items():
                if scores["support"] and (not source.labels or kind in source.labels):
                    out.setdefault(file, {})[kind] = counts(scores)
    return out


def summed(by_type: dict[str, Counts], kinds: list[str]) -> Counts:
    tp, pred, gold = (sum(by_type[k][i] for k in kinds) for i in range(3))
    return tp, pred, gold


def table(a: dict[str, dict[str, Counts]], b: dict[str, dict[str, Counts]]) -> tuple[list[str], float, float]:
    lines = ["| corpus file | type | A P/R/F1 | B P/R/F1 | B - A F1 |", "|---|---|---|---|---|"]
    micro_a, micro_b = [], []
    for file in sorted(set(a) & set(b)):
        kinds = sorted(set(a[file]) & set(b[file]))
        total_a, total_b = summed(a[file], kinds), summed(b[file], kinds)
        for kind, ca, cb in [*((k, a[file][k], b[file][k]) for k in kinds), ("**micro**", total_a, total_b)]:
            pa, pb = prf(ca), prf(cb)
            lines.append(f"| {file} | {kind} | {shown(pa)} | {shown(pb)} | {pb[2] - pa[2]:+.4f} |")
        micro_a.append(prf(total_a)[2])
        micro_b.append(prf(total_b)[2])
    return lines, sum(micro_a) / len(micro_a), sum(micro_b) / len(micro_b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=Path, required=True, help="train-joint output folder (the reference grouping)")
    parser.add_argument("--b", type=Path, required=True, help="train-joint output folder (the other grouping)")
    parser.add_argument("--epoch", type=int, default=0, help="compare at this epoch (0: each run's kept epoch)")
    args = parser.parse_args()
    lines, mean_a, mean_b = table(by_file(args.a, args.epoch), by_file(args.b, args.epoch))
    print("\n".join(lines))
    print(f"\nmean micro F1 over corpus files: A {mean_a:.4f}, B {mean_b:.4f} ({mean_b - mean_a:+.4f})")
    for name, run in (("A", args.a), ("B", args.b)):
        print(f"{name}: {run}, epoch {record_of(run, args.epoch)['epoch']}, {train_seconds(run):.0f} s training")


if __name__ == "__main__":
    main()
