"""``bioner train | average | pretrain | evaluate | export``: argument parsing only; the work lives in the modules.

``train`` and ``pretrain`` flags are generated from their config dataclasses (:mod:`train.flags`).
Nothing here imports torch: ``bioner serve`` builds these parsers too.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from train.config import JointConfig, PretrainConfig, TrainConfig
from train.flags import add_flags, config_from_args

RESUME = "continue the run in --output after its last completed epoch (same settings; a finished run is not retrained)"


SPLIT_SEED = "seed of the dev split; default: the one the training run carved with (its serving.json), else 13"


def add_train_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    t = sub.add_parser("train", help="fine-tune an encoder for NER")
    add_flags(t, TrainConfig)
    t.add_argument("--folds", type=int, default=0, help="k-fold cross-validation over --train documents (K models, mean ± sd per type)")
    t.add_argument("--resume", action="store_true", help=RESUME)
    t.set_defaults(handler=_train)

    a = sub.add_parser(
        "average",
        help="checkpoint averaging: the mean of a --keep-epochs run's epoch weights, or of several runs' best weights, scored on their dev",
    )
    source = a.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="a `bioner train --keep-epochs` run folder (with --epochs)")
    source.add_argument(
        "--checkpoints",
        nargs="+",
        help="a uniform model soup: run folders fine-tuned from one base, with the same labels, head and dev documents",
    )
    a.add_argument("--epochs", type=int, nargs="+", help="the epochs of --run to average (for example the last three)")
    a.add_argument("--output", required=True, help="checkpoint folder for the averaged weights (what `bioner export` takes)")
    a.set_defaults(handler=_average)

    m = sub.add_parser("pretrain", help="domain-adaptive masked-LM pretraining of the base encoder on raw text")
    add_flags(m, PretrainConfig)
    m.add_argument("--resume", action="store_true", help=RESUME)
    m.set_defaults(handler=_pretrain)

    j = sub.add_parser("train-joint", help="one encoder, one head per corpus, trained together (multi-head bundle)")
    add_flags(j, JointConfig)
    j.add_argument("--resume", action="store_true", help=RESUME)
    j.set_defaults(handler=_train_joint)

    xj = sub.add_parser("export-joint", help="a train-joint checkpoint as one ONNX graph with every head's logits")
    xj.add_argument("--checkpoint", required=True)
    xj.add_argument("--output", required=True)
    xj.add_argument("--name", default=None)
    xj.add_argument("--version", default="0.1.0")
    xj.add_argument("--tolerance", type=float, default=1e-3, help="max |logit difference| PyTorch vs ONNX fp32")
    xj.add_argument("--quantize", choices=["none", "static"], default="none", help="static: int8 with s7 weights, as bioner export")
    xj.add_argument("--calibration-windows", type=int, default=256, help="training windows used to calibrate static int8")
    xj.set_defaults(handler=_export_joint)

    e = sub.add_parser("evaluate", help="strict span P/R/F1 per type of a checkpoint or ONNX bundle")
    e.add_argument("--model", required=True, help="PyTorch checkpoint folder or ONNX bundle folder")
    e.add_argument("--data", nargs="+", required=True)
    e.add_argument("--dev-fraction", type=float, default=0.0, help="score only the dev split carved from --data")
    e.add_argument("--seed", type=int, default=None, help=SPLIT_SEED)
    e.add_argument("--strategy", choices=["first", "average", "max"], default=None)
    e.add_argument("--decoding", choices=["greedy", "constrained", "crf"], default=None, help="default: the model's")
    e.add_argument(
        "--consistency", choices=["none", "first_mention"], default=None, help="one type per name within a text; default: the model's"
    )
    e.add_argument("--max-length", type=int, default=None)
    e.add_argument("--stride", type=int, default=None)
    e.add_argument("--window-align", choices=["tokens", "sentences"], default=None, help="where windows end; default: the model's")
    e.add_argument("--tag-map", default=None)
    e.add_argument("--separator", default=" ")
    e.add_argument("--join-sentences", type=int, default=1, help="score column files as documents of this many consecutive sentences")
    e.add_argument("--types", nargs="*", default=None, help="score only these entity types (cross-corpus: the types both corpora share)")
    e.add_argument("--report", default=None, help="write the JSON report here")
    e.set_defaults(handler=_evaluate)

    x = sub.add_parser("export", help="ONNX bundle via optimum, graph optimisation, int8, parity check")
    x.add_argument("--checkpoint", required=True)
    x.add_argument("--output", required=True)
    x.add_argument("--data", nargs="*", default=[], help="corpus for the dev-F1 parity check and calibration")
    x.add_argument("--dev-fraction", type=float, default=0.1)
    x.add_argument("--seed", type=int, default=None, help=SPLIT_SEED)
    x.add_argument("--quantize", choices=["none", "dynamic", "static"], default="none")
    x.add_argument("--tolerance", type=float, default=1e-3, help="max |logit difference| PyTorch vs ONNX fp32")
    x.add_argument("--tag-map", default=None)
    x.add_argument("--separator", default=" ", help="how column-file tokens are joined into text ('' for Chinese)")
    x.add_argument(
        "--optimization-level",
        type=int,
        default=1,
        choices=[0, 1, 2, 99],
        help="ORT graph optimisation applied at export (optimum levels; static int8 needs <= 1)",
    )
    x.add_argument("--calibration-windows", type=int, default=256, help="training windows used to calibrate static int8")
    x.add_argument("--calibration-method", choices=["minmax", "percentile", "entropy"], default="minmax")
    x.add_argument(
        "--int8-ranges",
        choices=["trained", "calibrated"],
        default="trained",
        help="activation ranges of a QAT checkpoint (--qat-epochs): the ranges it trained through, or calibrated afresh "
        "with --calibration-method as for any other checkpoint",
    )
    x.add_argument("--exclude-nodes", nargs="*", default=[], help="graph nodes kept in fp32 by static int8")
    x.add_argument(
        "--int8-weights",
        choices=["s8", "s7", "u8"],
        default="s7",
        help="static int8 weight format: s8 (full range; u8 x s8 products saturate on CPUs without VNNI, so answers differ "
        "between instruction sets), s7 (reduced range, [-64, 64]: no saturation, the same integers on AVX2, AVX-512 and VNNI), "
        "u8 (u8 x u8 kernels)",
    )
    x.add_argument(
        "--keep-fp32",
        nargs="*",
        default=["attention_scores", "ffn_out"],
        choices=["attention_scores", "qkv", "attention_out", "ffn_in", "ffn_out", "classifier", "embeddings"],
        help="node groups static int8 leaves in fp32 (default: measured to lose the most: "
        "FFN down-projections and the activation x activation attention products)",
    )
    x.add_argument(
        "--calibrate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fit a score temperature on the dev documents (needs --data); model card gets ECE before/after and a reliability diagram",
    )
    x.add_argument(
        "--consistency",
        choices=["none", "first_mention"],
        default=None,
        help="the bundle's default for one type per name within a text (default: the checkpoint's, else none)",
    )
    x.add_argument("--name", default=None, help="bundle name (default: output folder name)")
    x.add_argument("--version", default="1")
    x.set_defaults(handler=_export)


def _require_extra(command: str) -> bool:
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        print(f"bioner {command}: install the train extra (pip install '.[train]'): {exc}", file=sys.stderr)
        return False
    return True


def _train(args: argparse.Namespace) -> int:
    if not _require_extra("train"):
        return 2
    from train.finetune import train
    from train.kfold import cross_validate
    from train.resume import ResumeError

    try:
        config = config_from_args(TrainConfig, args)
        if args.folds and (args.folds < 2 or args.dev):
            raise ValueError("--folds K needs K >= 2 and cuts its dev folds from --train (no --dev)")
    except ValueError as exc:
        print(f"bioner train: {exc}", file=sys.stderr)
        return 2
    try:
        if args.folds:
            cross_validate(config, args.folds, resume=args.resume)
            return 0
        best = train(config, resume=args.resume)
    except ResumeError as exc:
        print(f"bioner train: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"best_epoch": best.get("epoch"), "dev_micro": best["dev"]["micro"]}, indent=2))
    return 0


def _average(args: argparse.Namespace) -> int:
    if not _require_extra("average"):
        return 2
    from train.average import average, soup

    if (args.run is None) != (args.epochs is None):
        problem = "--run needs --epochs" if args.epochs is None else "--epochs goes with --run, not with --checkpoints"
        print(f"bioner average: {problem}", file=sys.stderr)
        return 2
    try:
        if args.run is not None:
            result = average(Path(args.run), args.epochs, Path(args.output))
            members = {"epochs": result["epochs"], "epochs_dev_f1": result["epochs_dev_f1"]}
        else:
            result = soup([Path(c) for c in args.checkpoints], Path(args.output))
            members = {"checkpoints_dev_f1": result["checkpoints_dev_f1"]}
    except ValueError as exc:
        print(f"bioner average: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({**members, "dev_micro": result["dev"]["micro"]}, indent=2))
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    if not _require_extra("pretrain"):
        return 2
    from train.pretrain import pretrain
    from train.resume import ResumeError

    try:
        record = pretrain(config_from_args(PretrainConfig, args), resume=args.resume)
    except ResumeError as exc:
        print(f"bioner pretrain: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: record[k] for k in ("perplexity_as_loaded", "perplexity_before", "perplexity_after")}, indent=2))
    return 0


def _train_joint(args: argparse.Namespace) -> int:
    if not _require_extra("train-joint"):
        return 2
    from train.joint import train_joint

    best = train_joint(config_from_args(JointConfig, args), resume=args.resume)
    print(json.dumps({"epoch": best.get("epoch"), "mean_f1": best.get("mean_f1")}, indent=2))
    return 0


def _export_joint(args: argparse.Namespace) -> int:
    if not _require_extra("export-joint"):
        return 2
    from train.export_joint import run_export_joint

    return run_export_joint(args)


def _evaluate(args: argparse.Namespace) -> int:
    from service.bundle_format import MODEL_FILE

    is_bundle = (Path(args.model) / MODEL_FILE).exists()  # an ONNX bundle is scored on the serving stack alone
    if not is_bundle and not _require_extra("evaluate"):
        return 2
    from train.evaluate_cli import run_evaluate

    return run_evaluate(args)


def _export(args: argparse.Namespace) -> int:
    if not _require_extra("export"):
        return 2
    from train.export import run_export

    return run_export(args)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="bioner-train")
    add_train_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # what the model card's "Reproduce" quotes
    return int(args.handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
