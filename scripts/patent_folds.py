"""The Chinese patents under the published protocol: five folds, each trained, selected and tested apart.

The published 0.54 ± 0.15 is the mean ± sd of test F1 over the five folds of ``cbp-gold``, from a
Chinese BERT with masked-LM fine-tuning on the patents and a CRF. Per fold this runs the same
recipe on the base given: the fold's unknown characters appended to the vocabulary, masked-LM on
the fold's training text, a CRF tagger trained on its train split with the epoch chosen on its dev
split, and ``bioner evaluate`` on its test split. Every step is a ``bioner`` process that is
skipped when its output exists, so the study resumes where it stopped.

A fold is about an hour on two CPU cores (MLM 21 min, 4 CRF epochs 40 min), so five do not fit one working session: with
``--measured FILE`` each finished fold's row (with its recipe, CPU and date) is kept in a file
meant to be committed, folds already there are not run again, and a row made with another recipe
is refused rather than averaged in.

Beside F1 it reports what the gap is made of: the [UNK] share of the test text before and after
the vocabulary extension, the held-out masked-LM perplexity before and after adaptation, the
annotation density (entities per 1,000 characters) of train and test, and F1 per type.

    python scripts/patent_folds.py --base-model "$MINILM" --data ../shared/data/cbp-gold/folds \
        --out runs/patents --mlm-epochs 3 --epochs 5
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer
from transfer_study import bioner  # the sibling script: one `bioner` step, logged

from service.corpora import read_corpus
from service.runtime.golden import cpu_summary
from train.run_log import train_seconds

PUBLISHED = (0.54, 0.15)  # mean, sd of test F1 over the five folds (Chinese BERT, LM fine-tuning, CRF)


def unknown_share(tokenizer_file: Path, texts: list[str]) -> float:
    """Share of the texts' tokens that the tokenizer maps to its unknown token."""
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    unk = tokenizer.token_to_id("[UNK]")
    ids = [i for encoding in tokenizer.encode_batch(texts, add_special_tokens=False) for i in encoding.ids]
    return sum(i == unk for i in ids) / max(len(ids), 1)


def density(path: Path) -> float:
    """Entities per 1,000 characters of a column file's text."""
    docs = read_corpus(path, None, "")
    return 1000 * sum(len(d.spans) for d in docs) / max(sum(len(d.text) for d in docs), 1)


def run_fold(args: argparse.Namespace, fold: int) -> dict[str, Any]:
    data, out = Path(args.data) / str(fold), Path(args.out) / f"fold-{fold}"
    train, dev, test = (str(data / f"{split}.bio") for split in ("train", "dev", "test"))
    common = ["--separator", "", "--threads", str(args.threads), "--seed", str(args.seed)]
    adapted = out / "mlm"
    if not (adapted / "pretrain.json").exists():
        bioner(
            "pretrain", "--text", train, "--add-vocab-from", train, "--base-model", args.base_model, "--output", str(adapted),
            "--epochs", str(args.mlm_epochs), "--head-warmup-steps", str(args.head_warmup_steps),
            "--learning-rate", str(args.mlm_learning_rate), "--resume", *common,
            log=out / "pretrain.log",
        )  # fmt: skip
    ner = out / "ner"
    if not (ner / "best.json").exists():
        bioner(
            "train", "--train", train, "--dev", dev, "--base-model", str(adapted), "--output", str(ner), "--head", "crf",
            "--epochs", str(args.epochs), "--learning-rate", str(args.learning_rate), "--resume", *common,
            log=out / "train.log",
        )  # fmt: skip
    report = out / "test.json"
    if not report.exists():
        bioner("evaluate", "--model", str(ner), "--data", test, "--separator", "", "--report", str(report), log=out / "test.log")
    mlm = json.loads((adapted / "pretrain.json").read_text(encoding="utf-8"))
    best = json.loads((ner / "best.json").read_text(encoding="utf-8"))
    scored = json.loads(report.read_text(encoding="utf-8"))
    test_texts = [d.text for d in read_corpus(test, None, "")]
    return {
        "fold": fold,
        "unk_share_base": unknown_share(Path(args.base_model) / "tokenizer.json", test_texts),
        "unk_share_extended": unknown_share(adapted / "tokenizer.json", test_texts),
        "added_vocabulary": mlm.get("added_vocabulary"),
        "perplexity_before": mlm.get("perplexity_before"),
        "perplexity_after": mlm.get("perplexity_after"),
        "density_train": density(Path(train)),
        "density_test": density(Path(test)),
        "mlm_seconds": mlm.get("head_warmup_seconds", 0.0) + mlm.get("adapt_seconds", 0.0),
        "ner_seconds": train_seconds(ner),
        "best_epoch": best["epoch"],
        "dev_f1": best["dev"]["micro"]["f1"],
        "test": {k: scored["micro"][k] for k in ("precision", "recall", "f1", "support")},
        "test_per_type_f1": {k: v["f1"] for k, v in scored["per_type"].items()},
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| fold | [UNK] base / extended | MLM perplexity before / after | entities per 1k chars train / test "
        "| best epoch | dev F1 | test P / R / F1 | test F1 per type |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = r["test"]
        types = ", ".join(f"{k} {v:.3f}" for k, v in sorted(r["test_per_type_f1"].items()))
        lines.append(
            f"| {r['fold']} | {r['unk_share_base']:.1%} / {r['unk_share_extended']:.2%} "
            f"| {r['perplexity_before']:,.0f} / {r['perplexity_after']:,.1f} | {r['density_train']:.1f} / {r['density_test']:.1f} "
            f"| {r['best_epoch']} | {r['dev_f1']:.4f} | {t['precision']:.4f} / {t['recall']:.4f} / **{t['f1']:.4f}** | {types} |"
        )
    f1 = [r["test"]["f1"] for r in rows]
    sd = statistics.stdev(f1) if len(f1) > 1 else 0.0
    lines.append(f"\nTest F1 over {len(f1)} fold(s): **{statistics.mean(f1):.2f} ± {sd:.2f}** (published: {PUBLISHED[0]} ± {PUBLISHED[1]})")
    return "\n".join(lines) + "\n"


RECIPE = ("base_model", "mlm_epochs", "mlm_learning_rate", "head_warmup_steps", "epochs", "learning_rate", "seed")


def load_measured(path: Path, recipe: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Rows of folds finished earlier, by fold; a row from another recipe stops the study (the base model by name only)."""
    if not path.exists():
        return {}
    rows = {int(r["fold"]): r for r in json.loads(path.read_text(encoding="utf-8"))}
    for fold, row in rows.items():
        theirs, ours = dict(row["recipe"]), dict(recipe)
        theirs["base_model"], ours["base_model"] = Path(theirs["base_model"]).parent.name, Path(ours["base_model"]).parent.name
        if theirs != ours:
            raise SystemExit(f"{path}: fold {fold} was measured with {row['recipe']}, not {recipe}; use another file")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", required=True)
    parser.add_argument("--data", default="../shared/data/cbp-gold/folds", help="folder with the folds 0..4 (train/dev/test.bio)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--mlm-epochs", type=int, default=3)
    parser.add_argument("--mlm-learning-rate", type=float, default=1e-4)
    parser.add_argument("--head-warmup-steps", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--measured", type=Path, help="JSON file of finished folds' rows, read and extended (commit it)")
    args = parser.parse_args()
    recipe = {k: getattr(args, k) for k in RECIPE}
    kept = load_measured(args.measured, recipe) if args.measured else {}
    rows = []
    for fold in args.folds:
        if fold not in kept:
            row = run_fold(args, fold)
            kept[fold] = {**row, "recipe": recipe, "cpu": cpu_summary()["model"], "date": datetime.date.today().isoformat()}
            if args.measured:
                args.measured.write_text(json.dumps([kept[f] for f in sorted(kept)], indent=2) + "\n", encoding="utf-8")
        rows.append(kept[fold])
        root = Path(args.out)
        (root / "results.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
        (root / "results.md").write_text(table(rows), encoding="utf-8")
    if args.measured:  # the protocol's figure is over every fold finished so far, not this call's
        rows = [kept[f] for f in sorted(kept)]
    print(table(rows))


if __name__ == "__main__":
    main()
