"""Measure the transfer methods of issue #7 on the shared corpora, one resumable step at a time.

Steps (each skips runs whose results already exist, and writes ``<out>/<step>.json``):

- ``multitask``: NCBI-disease with 100%, 25% and 10% of its training sentences, single-task vs
  multi-task with the UN speeches (general-domain NER, malformed tags cleaned) then fine-tune.
- ``crosscorpus``: the NCBI-disease and BC5CDR models of ``--imbalance`` (plain CE) scored on the
  other corpus's dev split, on the type they share (Disease).
- ``mlm``: masked-LM adaptation of the base on the JNLPBA abstracts' raw text; NCBI-disease NER
  from the adapted encoder vs from the base.
- ``chinese``: vocabulary extension + masked-LM adaptation on the Chinese patents' text, then NER
  on cbp-gold; dev F1 per type.
- ``kfold``: ``train --folds`` on NCBI-disease: mean ± sd of dev F1 per type.

    python scripts/transfer_study.py --base-model "$MINILM" --data ../shared/data --out runs/transfer \
        --imbalance runs/imbalance --steps multitask crosscorpus mlm chinese kfold
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from train.run_log import train_seconds

UN_TAG_MAP = "I-PRG=I-ORG,I-I-MISC=I-MISC,VMISC=I-MISC,I-=O,0=O"


def bioner(*args: str, log: Path) -> None:
    command = [sys.executable, "-m", "train.cli", *args]
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"[{time.strftime('%H:%M:%S')}] {' '.join(command)}", flush=True)
    with log.open("a", encoding="utf-8") as fh:  # a resumed step adds to its log
        subprocess.run(command, stdout=fh, stderr=subprocess.STDOUT, check=True)


def best(run: Path) -> dict[str, Any]:
    record = json.loads((run / "best.json").read_text(encoding="utf-8"))
    record["train_seconds"] = train_seconds(run)
    return record


def train_once(args: argparse.Namespace, out: Path, *flags: str) -> dict[str, Any]:
    if not (out / "best.json").exists():
        common = ["--epochs", str(args.epochs), "--learning-rate", str(args.learning_rate), "--seed", "13", "--threads", str(args.threads)]
        bioner("train", "--output", str(out), *common, *flags, log=out / "train.log")
    return best(out)


def ncbi(args: argparse.Namespace) -> list[str]:
    data = Path(args.data)
    return ["--train", str(data / "ncbi-disease/train.tsv"), "--dev", str(data / "ncbi-disease/devel.tsv")]


def step_multitask(args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    un = str(Path(args.data) / "un-ner/tagged-training")
    rows = []
    for fraction in (1.0, 0.25, 0.1):
        single = train_once(
            args, out / f"single-{fraction}", *ncbi(args), "--base-model", args.base_model, "--train-fraction", str(fraction)
        )
        multi = train_once(
            args,
            out / f"multi-{fraction}",
            *ncbi(args),
            "--base-model",
            args.base_model,
            "--train-fraction",
            str(fraction),
            "--aux-train",
            un,
            "--aux-tag-map",
            UN_TAG_MAP,
            "--aux-ratio",
            "0.5",
            "--aux-epochs",
            "1",
        )
        # control: as many passes over the biomedical data as the multi-task run makes (its joint epochs see it too)
        matched_epochs = args.epochs + 1
        matched_dir = out / f"single-{fraction}-e{matched_epochs}"
        matched = None
        if fraction in args.matched_fractions:
            matched_args = argparse.Namespace(**{**vars(args), "epochs": matched_epochs})
            matched = train_once(matched_args, matched_dir, *ncbi(args), "--base-model", args.base_model, "--train-fraction", str(fraction))
        rows.append(
            {
                "train_fraction": fraction,
                "single_f1": single["dev"]["micro"]["f1"],
                "single_matched_epochs_f1": matched["dev"]["micro"]["f1"] if matched else None,
                "multi_f1": multi["dev"]["micro"]["f1"],
                "multi_best_phase": multi.get("phase"),
                "single_seconds": single["train_seconds"],
                "multi_seconds": multi["train_seconds"],
            }
        )
    return rows


def step_crosscorpus(args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    data, source = Path(args.data), Path(args.imbalance)
    rows = []
    for model, own, other in (
        ("ncbi-disease", "ncbi-disease/devel.tsv", "bc5cdr/devel.tsv"),
        ("bc5cdr", "bc5cdr/devel.tsv", "ncbi-disease/devel.tsv"),
    ):
        checkpoint = source / model / "ce"
        row: dict[str, Any] = {"model": model, "type": "Disease"}
        for where, dev in (("own_dev", own), ("other_dev", other)):
            report = out / f"{model}-on-{dev.split('/')[0]}.json"
            if not report.exists():
                bioner(
                    "evaluate",
                    "--model",
                    str(checkpoint),
                    "--data",
                    str(data / dev),
                    "--types",
                    "Disease",
                    "--report",
                    str(report),
                    log=report.with_suffix(".log"),
                )
            disease = json.loads(report.read_text(encoding="utf-8"))["per_type"]["Disease"]
            row[where] = {k: disease[k] for k in ("precision", "recall", "f1")}
        rows.append(row)
    return rows


def step_mlm(args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    adapted = out / "minilm-jnlpba-mlm"
    if not (adapted / "pretrain.json").exists():
        bioner(
            "pretrain", "--text", str(Path(args.data) / "jnlpba/train"), "--base-model", args.base_model, "--output", str(adapted),
            "--epochs", "1", "--head-warmup-steps", str(args.head_warmup_steps), "--threads", str(args.threads),
            log=out / "pretrain-jnlpba.log",
        )  # fmt: skip
    record = json.loads((adapted / "pretrain.json").read_text(encoding="utf-8"))
    base_run = Path(args.imbalance) / "ncbi-disease" / "ce"
    base = (
        best(base_run)
        if (base_run / "best.json").exists()
        else train_once(args, out / "ncbi-base", *ncbi(args), "--base-model", args.base_model)
    )
    with_mlm = train_once(args, out / "ncbi-from-mlm", *ncbi(args), "--base-model", str(adapted))
    return [
        {
            "perplexity_as_loaded": record["perplexity_as_loaded"],
            "perplexity_before": record["perplexity_before"],
            "perplexity_after": record["perplexity_after"],
            "adapt_seconds": record["adapt_seconds"],
            "ncbi_f1_base": base["dev"]["micro"]["f1"],
            "ncbi_f1_adapted": with_mlm["dev"]["micro"]["f1"],
        }
    ]


def step_chinese(args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    data = Path(args.data) / "cbp-gold"
    adapted = out / "minilm-cbp-mlm"
    if not (adapted / "pretrain.json").exists():
        bioner(
            "pretrain", "--text", str(data / "train.bio"), "--base-model", args.base_model, "--output", str(adapted),
            "--add-vocab-from", str(data / "train.bio"), "--separator", "", "--epochs", "1",
            "--head-warmup-steps", str(args.head_warmup_steps), "--threads", str(args.threads),
            log=out / "pretrain-cbp.log",
        )  # fmt: skip
    record = json.loads((adapted / "pretrain.json").read_text(encoding="utf-8"))
    ner = train_once(
        args,
        out / "cbp-ner",
        "--train",
        str(data / "train.bio"),
        "--dev",
        str(data / "dev.bio"),
        "--separator",
        "",
        "--base-model",
        str(adapted),
    )
    return [
        {
            "added_vocabulary": record["added_vocabulary"],
            "perplexity_before": record["perplexity_before"],
            "perplexity_after": record["perplexity_after"],
            "dev": {k: ner["dev"]["micro"][k] for k in ("precision", "recall", "f1")},
            "per_type_f1": {k: v["f1"] for k, v in ner["dev"]["per_type"].items()},
            "best_epoch": ner["epoch"],
            "train_seconds": ner["train_seconds"],
        }
    ]


def step_kfold(args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    run = out / "ncbi-kfold"
    if not (run / "kfold.json").exists():
        train_file = str(Path(args.data) / "ncbi-disease/train.tsv")
        bioner(
            "train", "--train", train_file, "--base-model", args.base_model, "--output", str(run), "--folds", str(args.folds),
            "--epochs", str(args.kfold_epochs), "--learning-rate", str(args.learning_rate), "--threads", str(args.threads),
            log=out / "kfold.log",
        )  # fmt: skip
    return [json.loads((run / "kfold.json").read_text(encoding="utf-8"))]


STEPS = {"multitask": step_multitask, "crosscorpus": step_crosscorpus, "mlm": step_mlm, "chinese": step_chinese, "kfold": step_kfold}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", required=True)
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--out", required=True)
    parser.add_argument("--imbalance", default="runs/imbalance", help="output of scripts/imbalance_study.py (plain-CE models are reused)")
    parser.add_argument("--steps", nargs="+", default=list(STEPS), choices=list(STEPS))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--head-warmup-steps", type=int, default=50)
    parser.add_argument("--chinese-epochs", type=int, default=2, help="NER epochs on cbp-gold (672k characters: the long pole)")
    parser.add_argument(
        "--matched-fractions",
        nargs="*",
        type=float,
        default=[0.25, 0.1],
        help="train fractions that also get a single-task run of epochs+1",
    )
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--kfold-epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    out = Path(args.out)
    for name in args.steps:
        rows = STEPS[name](args, out / name)
        (out / f"{name}.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {json.dumps(rows)}", flush=True)


if __name__ == "__main__":
    main()
