"""MODEL_CARD.md: what the bundle is, how good, how big, and the exact command to rebuild it."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any


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


def write_model_card(folder: Path, meta: dict[str, Any], parity: dict[str, Any], argv: list[str]) -> None:
    train_config = meta.get("train_config", {})
    size_mb = (folder / "model.onnx").stat().st_size / 1e6
    command = "bioner export " + " ".join(shlex.quote(a) for a in argv[2:]) if len(argv) > 2 else "(see README)"
    train_cmd = (
        "bioner train " + " ".join(f"--{k.replace('_', '-')} {shlex.quote(str(v))}" for k, v in train_config.items()
                                   if k not in ("tag_map", "dev", "train") and v not in (None, "", []))
        + " --train " + " ".join(train_config.get("train", []))
    ) if train_config else "(unknown)"
    lines = [
        f"# {meta.get('name', folder.name)} {meta.get('version', '')}",
        "",
        "Token-classification bundle for the bioner service (ONNX Runtime, no torch at serving time).",
        "",
        "## What it is",
        f"- Base model: `{train_config.get('base_model', 'unknown')}`",
        f"- Training data: {', '.join(train_config.get('train', [])) or 'unknown'}; dev: "
        f"{'files ' + ', '.join(train_config['dev']) if train_config.get('dev') else str(train_config.get('dev_fraction', '?')) + ' of documents carved with seed ' + str(train_config.get('seed', '?'))}",
        f"- Window {meta.get('max_length')} tokens, overlap {meta.get('stride')}, aggregation `{meta.get('aggregation_strategy')}`",
        f"- Best epoch: {meta.get('best_epoch', '?')}; quantisation: {meta.get('quantization', 'none')}",
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
        "## Parity",
        f"- max |logit PyTorch - ONNX fp32| = {parity.get('max_abs_logit_diff_fp32', float('nan')):.2e} (tolerance {parity.get('tolerance')})",
        *([f"- max |logit PyTorch - ONNX int8| = {parity['max_abs_logit_diff_int8']:.2e}"] if "max_abs_logit_diff_int8" in parity else []),
        "- windows/s on the export machine (batch 8): "
        + ", ".join(f"{k} {v:.1f}" for k, v in parity.get("windows_per_second", {}).items()),
        "",
        "## Reproduce",
        "```",
        train_cmd,
        command,
        "```",
        "",
    ]
    (folder / "MODEL_CARD.md").write_text("\n".join(lines), encoding="utf-8")
