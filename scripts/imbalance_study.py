"""Train one base encoder on several corpora with each loss / head option and tabulate dev P/R/F1.

Every run is a separate ``bioner train`` process with the same seed, epochs and schedule, so
the only difference between rows is the option named in the row. A run whose ``best.json``
already exists is read, not retrained, so the study can be resumed or extended. Writes
``results.json`` and ``results.md`` (one Markdown table) under ``--out``.

    python scripts/imbalance_study.py --base-model "$MINILM" --data ../shared/data \
        --out runs/imbalance --epochs 3 --learning-rate 1e-4
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from train.run_log import epoch_records

# run name -> extra `bioner train` flags
RUNS: dict[str, list[str]] = {
    "ce": ["--loss", "ce"],
    "welt": ["--loss", "welt"],
    "ens0.3": ["--loss", "ens", "--ens-beta", "0.3"],
    "ens0.99": ["--loss", "ens", "--ens-beta", "0.99"],
    # within ~1/n of 1, where the effective-number weights stop being flat (issue #14)
    "ens0.9999": ["--loss", "ens", "--ens-beta", "0.9999"],
    "ens0.99999": ["--loss", "ens", "--ens-beta", "0.99999"],
    "crf": ["--loss", "ce", "--head", "crf"],
}
# corpus name -> (train file, dev file) under --data
CORPORA: dict[str, tuple[str, str]] = {
    "ncbi-disease": ("ncbi-disease/train.tsv", "ncbi-disease/devel.tsv"),
    "bc5cdr": ("bc5cdr/train.tsv", "bc5cdr/devel.tsv"),
}


def train_run(args: argparse.Namespace, corpus: str, run: str, out: Path) -> None:
    train_file, dev_file = CORPORA[corpus]
    data = Path(args.data)
    command = [
        sys.executable, "-m", "train.cli", "train",
        "--train", str(data / train_file),
        "--dev", str(data / dev_file),
        "--base-model", args.base_model,
        "--output", str(out),
        "--epochs", str(args.epochs),
        "--learning-rate", str(args.learning_rate),
        "--batch-size", str(args.batch_size),
        "--seed", str(args.seed),
        "--threads", str(args.threads),
        *RUNS[run],
    ]  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    print(f"[{time.strftime('%H:%M:%S')}] {corpus} / {run}: {' '.join(command)}", flush=True)
    with (out / "train.log").open("w", encoding="utf-8") as log:
        subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=True)


def summarise(corpus: str, run: str, out: Path) -> dict[str, Any]:
    best = json.loads((out / "best.json").read_text(encoding="utf-8"))
    epochs = epoch_records(out)
    micro = best["dev"]["micro"]
    return {
        "corpus": corpus,
        "run": run,
        "precision": micro["precision"],
        "recall": micro["recall"],
        "f1": micro["f1"],
        "per_type_f1": {k: v["f1"] for k, v in best["dev"]["per_type"].items()},
        "best_epoch": best["epoch"],
        "f1_by_epoch": [e["dev"]["micro"]["f1"] for e in epochs],
        "train_seconds": sum(e["epoch_seconds"] for e in epochs),
        "tokens_per_second": sum(e["train_tokens_per_second"] for e in epochs) / len(epochs),
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| corpus | run | dev P | dev R | dev F1 | F1 per type | best epoch | train time (s) | tokens/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        types = ", ".join(f"{k} {v:.4f}" for k, v in sorted(r["per_type_f1"].items()))
        lines.append(
            f"| {r['corpus']} | {r['run']} | {r['precision']:.4f} | {r['recall']:.4f} | **{r['f1']:.4f}** | {types} "
            f"| {r['best_epoch']} | {r['train_seconds']:.0f} | {r['tokens_per_second']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", required=True)
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--out", required=True)
    parser.add_argument("--corpora", nargs="+", default=list(CORPORA), choices=list(CORPORA))
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    root = Path(args.out)
    rows = []
    for run in args.runs:  # options outer: every corpus gets a row for an option before the next option starts
        for corpus in args.corpora:
            out = root / corpus / run
            if not (out / "best.json").exists():
                train_run(args, corpus, run, out)
            rows.append(summarise(corpus, run, out))
            (root / "results.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
            (root / "results.md").write_text(table(sorted(rows, key=lambda r: (r["corpus"], list(RUNS).index(r["run"])))), encoding="utf-8")
    print(table(sorted(rows, key=lambda r: (r["corpus"], list(RUNS).index(r["run"])))))


if __name__ == "__main__":
    main()
