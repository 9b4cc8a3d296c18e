"""The joint model against single-corpus models, side by side, from their training logs.

Issue #12 asks whether one shared encoder is at least as good on every corpus as a model trained
on that corpus alone. Each run's ``metrics.jsonl`` holds its dev report per epoch; the kept epoch
is the one the run itself kept (best mean dev F1), so the table shows what each run would ship.
Run the single-corpus models with ``bioner train-joint --corpora NAME=PATH`` and the joint run's
other flags: same base, recipe, epochs, documents and dev split.

    python scripts/joint_table.py --joint runs/joint2/joint \
        --single ncbi=runs/base2/ncbi bc5cdr=runs/base2/bc5cdr ...
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from train.run_log import epoch_records, train_seconds


def epochs(run: Path) -> list[dict[str, Any]]:
    """The per-epoch records of a run (the header line naming the heads is skipped)."""
    return [r for r in epoch_records(run) if "dev" in r]


def kept(run: Path) -> dict[str, Any]:
    """The epoch a run keeps: the first with the best mean dev F1, as ``train-joint`` chooses."""
    records = epochs(run)
    if not records:
        raise SystemExit(f"{run}: no finished epoch in metrics.jsonl")
    return max(records, key=lambda r: (r["mean_f1"], -r["epoch"]))


def prf(report: dict[str, Any]) -> str:
    return f"{report['precision']:.4f} / {report['recall']:.4f} / {report['f1']:.4f}"


def rows(joint: dict[str, Any], singles: dict[str, dict[str, Any]]) -> list[str]:
    out = ["| corpus | type | single P/R/F1 | joint P/R/F1 | joint - single F1 |", "|---|---|---|---|---|"]
    for name, single in singles.items():
        j, s = joint["dev"][name], single["dev"][name]
        for kind in [*sorted(s["per_type"]), "micro"]:
            js, ss = (j[kind], s[kind]) if kind == "micro" else (j["per_type"][kind], s["per_type"][kind])
            label = "**micro**" if kind == "micro" else kind
            out.append(f"| {name} | {label} | {prf(ss)} | {prf(js)} | {js['f1'] - ss['f1']:+.4f} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--joint", type=Path, required=True, help="train-joint output folder with every head")
    parser.add_argument("--single", nargs="+", required=True, help="NAME=FOLDER of each single-corpus run")
    args = parser.parse_args()
    single_runs = dict(spec.split("=", 1) for spec in args.single)
    joint = kept(args.joint)
    singles = {name: kept(Path(folder)) for name, folder in single_runs.items()}
    print("\n".join(rows(joint, singles)))
    mean_single = sum(s["dev"][n]["micro"]["f1"] for n, s in singles.items()) / len(singles)
    mean_joint = sum(joint["dev"][n]["micro"]["f1"] for n in singles) / len(singles)
    print(f"\nmean micro F1 over {len(singles)} corpora: single {mean_single:.4f}, joint {mean_joint:.4f}")
    print(f"joint: kept epoch {joint['epoch']}, {train_seconds(args.joint):.0f} s training")
    for name, folder in single_runs.items():
        print(f"{name}: kept epoch {singles[name]['epoch']}, {train_seconds(Path(folder)):.0f} s training")


if __name__ == "__main__":
    main()
