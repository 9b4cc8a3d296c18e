"""Knowledge distillation: a teacher's soft labels, or an ensemble's, as a second training target.

A teacher is a ``bioner train`` checkpoint or an exported ONNX bundle (the shipped int8 model can
teach) with the student's labels and vocabulary; several teachers are an ensemble whose
probabilities are averaged. Their soft labels are computed once, before the first step, on exactly
the windows the student trains on, so a distilled epoch costs what a plain one costs. On every
trained subword the loss is ``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(gold)``
(Hinton et al., 2015): the soft labels carry what the teacher learned about near-misses, which a
small student cannot find from the hard tags alone.

``student_layers`` keeps that many of the base encoder's layers, evenly spaced and ending with the
last (DistilBERT builds its student from the teacher's layers the same way): a cheaper network to
serve, whose lost accuracy the teacher's soft labels are there to win back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.bundle_format import CONFIG_FILE, TOKENIZER_FILE, read_serving
from service.decoding.aggregate import softmax
from service.decoding.labels import LabelScheme
from service.decoding.paths import allowed_transitions, crf_marginals
from service.decoding.pipeline import run_rows
from service.decoding.token_types import TokenTypes, strip
from train.align import IGNORE, Feature
from train.batches import sorted_batches


@dataclass
class Teacher:
    """Soft labels for every training window (``[tokens, labels]`` float32, rows sum to 1) and the loss's mix."""

    probabilities: list[np.ndarray]
    alpha: float
    temperature: float

    def word_batch(self, indices: Sequence[int], width: int) -> torch.Tensor:
        """Word-level soft labels (a CRF student's) of a batch's windows that have words, left-aligned
        and padded to ``width`` as :func:`train.crf.labelled_positions` gathers the emissions."""
        return self._padded([i for i in indices if len(self.probabilities[i])], width)

    def batch(self, indices: Sequence[int], width: int) -> torch.Tensor:
        """The soft labels of a batch's windows, right-padded with zeros (padding is never trained)."""
        return self._padded(indices, width)

    def _padded(self, indices: Sequence[int], width: int) -> torch.Tensor:
        out = torch.zeros((len(indices), width, self.probabilities[0].shape[1]), dtype=torch.float32)
        for r, i in enumerate(indices):
            out[r, : len(self.probabilities[i])] = torch.from_numpy(self.probabilities[i])
        return out


def kept_layers(total: int, keep: int) -> list[int]:
    """``keep`` of ``total`` layer indices, evenly spaced and ending with the last: 6 -> 3 keeps 1, 3, 5."""
    if not 0 < keep <= total:
        raise ValueError(f"a student keeps 1 to {total} layers of this encoder, not {keep}")
    return [round((i + 1) * total / keep) - 1 for i in range(keep)]


def shrink(model: Any, keep: int) -> list[int]:
    """Drop all but ``keep`` encoder layers in place (the saved config follows); returns the kept indices."""
    encoder = model.base_model.encoder
    layers = kept_layers(len(encoder.layer), keep)
    encoder.layer = torch.nn.ModuleList([encoder.layer[i] for i in layers])
    model.config.num_hidden_layers = keep
    return layers


def distill_loss(
    logits: torch.Tensor, labels: torch.Tensor, soft: torch.Tensor, teacher: Teacher, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """The mixed loss over trained subwords (``labels != IGNORE``); ``weight`` weighs the gold term's classes."""
    trained = labels != IGNORE
    student, target, gold = logits[trained], soft[trained], labels[trained]
    t = teacher.temperature
    log_student = torch.nn.functional.log_softmax(student / t, dim=-1)
    kl = (target * (target.clamp_min(1e-12).log() - log_student)).sum(-1).mean() * t * t
    ce = torch.nn.functional.cross_entropy(student, gold, weight=weight)
    return teacher.alpha * kl + (1.0 - teacher.alpha) * ce


def teacher_probabilities(
    teachers: Sequence[str],
    features: Sequence[Feature],
    labels: Sequence[str],
    vocabulary: dict[str, int],
    temperature: float,
    token_types: TokenTypes = TokenTypes.NONE,
) -> list[np.ndarray]:
    """Each window's soft labels at ``temperature``, per subword, averaged over the teachers."""
    total = [np.zeros((len(f.input_ids), len(labels)), dtype=np.float32) for f in features]
    for path in map(Path, teachers):
        check_teacher(path, labels, vocabulary, token_types)
        if read_serving(path).transitions is not None:
            raise ValueError(f"teacher {path} has a CRF head, whose emission softmax is not what it predicts: train the student --head crf")
        for i, logits in teacher_logits(path, features):
            total[i] += softmax(logits.astype(np.float64) / temperature).astype(np.float32)
    return [t / len(teachers) for t in total]


def teacher_word_marginals(
    teachers: Sequence[str],
    features: Sequence[Feature],
    labels: Sequence[str],
    vocabulary: dict[str, int],
    temperature: float,
    token_types: TokenTypes = TokenTypes.NONE,
) -> list[np.ndarray]:
    """Each window's soft labels for a CRF student: ``(words, labels)`` at its labelled positions (word
    starts), averaged over the teachers.

    A CRF teacher's emission softmax is not what it predicts; its marginals under its own transitions
    are. So a CRF teacher gives its marginals (the whole CRF at ``temperature``), a linear teacher its
    softmax. As in training, a window may open inside an entity: no start constraint."""
    scheme = LabelScheme.from_id2label(dict(enumerate(labels)))
    allowed, _ = allowed_transitions(scheme)
    anywhere = np.ones(len(labels), dtype=bool)
    words = [f.labels != IGNORE for f in features]
    total = [np.zeros((int(w.sum()), len(labels)), dtype=np.float64) for w in words]
    for path in map(Path, teachers):
        check_teacher(path, labels, vocabulary, token_types)
        transitions = read_serving(path).transitions
        for i, logits in teacher_logits(path, features):
            if not len(total[i]):
                continue
            scores = logits[words[i]].astype(np.float64) / temperature
            if transitions is None:
                total[i] += softmax(scores)
            else:
                total[i] += crf_marginals(scores, allowed, anywhere, transitions.tempered(temperature))
    return [(t / len(teachers)).astype(np.float32) for t in total]


def teacher_logits(path: Path, features: Sequence[Feature]) -> Iterator[tuple[int, np.ndarray]]:
    """``(window index, logits)`` of one teacher over every window, in length-sorted batches."""
    from train.evaluate_cli import load_runner

    run, _ = load_runner(path)
    keep_types = read_serving(path).token_types is not TokenTypes.NONE
    for group in sorted_batches([len(f.input_ids) for f in features], 32, None):
        rows = [f.input_ids if keep_types else strip(f.input_ids) for f in (features[i] for i in group)]
        yield from zip(group, run_rows(run, rows))


def check_teacher(path: Path, labels: Sequence[str], vocabulary: dict[str, int], token_types: TokenTypes) -> None:
    """A teacher must tag with the student's labels, in order, over the student's vocabulary, and read
    no token types the student's windows lack (a cased student's teacher may be uncased)."""
    theirs_types = read_serving(path).token_types
    if theirs_types not in (TokenTypes.NONE, token_types):
        kind = theirs_types.value
        raise ValueError(f"teacher {path} reads token types {kind!r}; train the student with --token-types {kind}")
    config = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    theirs = [label for _, label in sorted((int(k), v) for k, v in config["id2label"].items())]
    if theirs != list(labels):
        raise ValueError(f"teacher {path} has labels {theirs}, the student {list(labels)}: distil on the teacher's corpus")
    from tokenizers import Tokenizer

    if Tokenizer.from_file(str(path / TOKENIZER_FILE)).get_vocab() != vocabulary:
        raise ValueError(f"teacher {path} has another vocabulary than the student's base model")
