"""A tiny, hand-weighted model bundle built with onnx.helper and the tokenizers library.

Each token id maps to a fixed logit row (a Gather), so the expected entities of any text are
known in advance: ``p53`` opens a protein, ``kinase`` continues one, ``myc`` opens a DNA, ``gene``
continues one, ``蛋``/``白`` are a protein in Chinese, everything else is ``O``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

LABELS = ["O", "B-protein", "I-protein", "B-DNA", "I-DNA"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
# token -> (label index, logit strength)
TOKENS: dict[str, tuple[int, float]] = {
    "the": (0, 4.0),
    "in": (0, 4.0),
    "cells": (0, 4.0),
    "binds": (0, 4.0),
    ".": (0, 4.0),
    ",": (0, 4.0),
    "and": (0, 4.0),
    "a": (0, 4.0),
    "to": (0, 4.0),
    "p53": (1, 4.0),
    "kinase": (2, 4.0),
    "myc": (3, 4.0),
    "gene": (4, 4.0),
    "##x": (4, 6.0),  # a confident I-DNA continuation subword
    "##y": (0, 0.5),  # an unsure O continuation subword
    "蛋": (1, 4.0),
    "白": (2, 4.0),
    "质": (2, 4.0),
    "在": (0, 4.0),
}


def build_tokenizer() -> Tokenizer:
    vocab = {tok: i for i, tok in enumerate(SPECIALS + list(TOKENS))}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, handle_chinese_chars=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    # Ship the same trap as real bundles: truncation and padding on, which the service must undo.
    tokenizer.enable_truncation(max_length=16)
    tokenizer.enable_padding(length=16, pad_id=0, pad_token="[PAD]")
    return tokenizer


def logit_table() -> np.ndarray:
    n_vocab = len(SPECIALS) + len(TOKENS)
    table = np.zeros((n_vocab, len(LABELS)), dtype=np.float32)
    table[:, 0] = 2.0  # specials and [UNK]: O
    for i, (label, strength) in enumerate(TOKENS.values(), start=len(SPECIALS)):
        table[i] = 0.0
        table[i, label] = strength
    return table


def build_graph(n_labels: int = len(LABELS), table: np.ndarray | None = None) -> onnx.ModelProto:
    table = logit_table() if table is None else table
    weights = helper.make_tensor("table", TensorProto.FLOAT, table.shape, table.flatten().tolist())
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["raw"], axis=0),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "axes"], ["mask_3d"]),
        helper.make_node("Mul", ["raw", "mask_3d"], ["logits"]),
    ]
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [-1])
    graph = helper.make_graph(
        nodes,
        "tiny-ner",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", n_labels])],
        initializer=[weights, axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


# The cased graph: a subword of token type 1 (written with an upper-case letter) gains this row.
CASE_ROW = np.array([0.0, 8.0, 0.0, 0.0, 0.0], dtype=np.float32)


def build_cased_graph() -> onnx.ModelProto:
    """The tiny graph plus a ``token_type_ids`` input: type 1 adds :data:`CASE_ROW`, so ``The``
    (cased) opens a protein where ``the`` stays ``O``: a test sees whether types reach the model."""
    table = logit_table()
    types = np.stack([np.zeros_like(CASE_ROW), CASE_ROW])
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["by_id"], axis=0),
        helper.make_node("Gather", ["types", "token_type_ids"], ["by_type"], axis=0),
        helper.make_node("Add", ["by_id", "by_type"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-cased-ner",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", len(LABELS)])],
        initializer=[
            helper.make_tensor("table", TensorProto.FLOAT, table.shape, table.flatten().tolist()),
            helper.make_tensor("types", TensorProto.FLOAT, types.shape, types.flatten().tolist()),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def write_bundle(
    folder: Path,
    max_length: int = 16,
    stride: int = 4,
    labels: list[str] | None = None,
    graph: onnx.ModelProto | None = None,
    serving: dict[str, object] | None = None,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    labels = labels or LABELS
    onnx.save(graph or build_graph(), str(folder / "model.onnx"))
    build_tokenizer().save(str(folder / "tokenizer.json"))
    config = {
        "model_type": "bert",
        "id2label": {str(i): l for i, l in enumerate(labels)},
        "label2id": {l: i for i, l in enumerate(labels)},
        "pad_token_id": 0,
        "max_position_embeddings": 512,
    }
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    meta = {
        "name": "tiny-test",
        "version": "1",
        "max_length": max_length,
        "stride": stride,
        "aggregation_strategy": "first",
        "decoding": "greedy",
    }
    meta.update(serving or {})
    (folder / "serving.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder


# A second head over the same tokens ("species", another corpus's labels): "cells" is a species on
# its own, "gene" opens one (so "myc gene" of the first head overlaps "gene" of this one).
SPECIES_LABELS = ["O", "B-Species", "I-Species"]
SPECIES_TOKENS: dict[str, tuple[int, float]] = {"cells": (1, 5.0), "gene": (1, 6.0)}


def two_head_table() -> np.ndarray:
    first = logit_table()
    second = np.zeros((first.shape[0], len(SPECIES_LABELS)), dtype=np.float32)
    second[:, 0] = 2.0
    vocab = {tok: i for i, tok in enumerate(SPECIALS + list(TOKENS))}
    for token, (label, strength) in SPECIES_TOKENS.items():
        second[vocab[token]] = 0.0
        second[vocab[token], label] = strength
    return np.concatenate([first, second], axis=1)


def write_two_head_bundle(folder: Path, **serving: object) -> Path:
    """One graph, one pass: the logits of head ``jnlpba`` (5 labels) and head ``species`` (3) side by side."""
    labels = LABELS + SPECIES_LABELS
    heads = [{"name": "jnlpba", "labels": LABELS}, {"name": "species", "labels": SPECIES_LABELS}]
    return write_bundle(folder, labels=labels, graph=build_graph(len(labels), two_head_table()), serving={"heads": heads, **serving})
