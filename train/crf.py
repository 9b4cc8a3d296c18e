"""Linear-chain CRF head over word-level emissions, trained by negative log-likelihood.

Emissions are the token classifier's logits at each word's first subword (the labelled
positions under label policy ``first``); the encoder is unchanged, so the exported ONNX graph
still produces plain logits and the learned scores travel in ``serving.json``
(:class:`service.decoding.crf.Transitions`). Moves the label scheme forbids (``O -> I-X``) are
pinned at :data:`~service.decoding.crf.FORBIDDEN` and never trained. Start scores are learned
but not constrained here: a training window may open inside an entity; the service forbids
``I-X`` at the start of a whole text.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from service.decoding.crf import FORBIDDEN, Transitions
from service.decoding.labels import LabelScheme
from service.decoding.paths import allowed_transitions
from train.align import IGNORE
from train.batches import model_inputs


class CrfHead(nn.Module):
    def __init__(self, scheme: LabelScheme) -> None:
        super().__init__()
        allowed, _ = allowed_transitions(scheme)
        n = len(scheme)
        self.transitions = nn.Parameter(torch.zeros(n, n))
        self.start = nn.Parameter(torch.zeros(n))
        self.end = nn.Parameter(torch.zeros(n))
        self.allowed: torch.Tensor
        self.forbid: torch.Tensor
        allowed_mask = torch.tensor(allowed)  # a copy: the service caches its (read-only) array
        self.register_buffer("allowed", allowed_mask)
        self.register_buffer("forbid", torch.where(allowed_mask, 0.0, FORBIDDEN))

    def matrix(self) -> torch.Tensor:
        return torch.where(self.allowed, self.transitions, torch.zeros_like(self.transitions)) + self.forbid

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean over sequences of ``-log p(tags | emissions)``; ``mask`` marks real positions, left-aligned."""
        trans = self.matrix()
        return (self._log_partition(emissions, mask, trans) - self._path_score(emissions, tags, mask, trans)).mean()

    def _path_score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
        maskf = mask.float()
        emitted = emissions.gather(-1, tags.unsqueeze(-1)).squeeze(-1)  # (B, T)
        score = self.start[tags[:, 0]] + (emitted * maskf).sum(dim=1)
        score = score + (trans[tags[:, :-1], tags[:, 1:]] * maskf[:, 1:]).sum(dim=1)
        last = tags.gather(1, (mask.sum(dim=1, keepdim=True) - 1).clamp(min=0)).squeeze(1)
        return score + self.end[last]

    def _log_partition(self, emissions: torch.Tensor, mask: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(_forward(emissions, mask, trans, self.start)[-1] + self.end, dim=1)

    def log_marginals(self, emissions: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """``log p(label of word t = j | window)`` (forward-backward, differentiable), for the CRF whose
        every score is divided by ``temperature``; ``(B, W, L)``, meaningful where ``mask`` is set."""
        trans, start, end = self.matrix() / temperature, self.start / temperature, self.end / temperature
        emissions = emissions / temperature
        alphas = _forward(emissions, mask, trans, start)
        log_z = torch.logsumexp(alphas[-1] + end, dim=1)
        betas = [end.expand_as(alphas[0])]  # position W-1; a row's last real word ends there too
        for t in range(emissions.shape[1] - 2, -1, -1):
            step = torch.logsumexp(trans.unsqueeze(0) + (emissions[:, t + 1] + betas[-1]).unsqueeze(1), dim=2)
            betas.append(torch.where(mask[:, t + 1 : t + 2], step, end.expand_as(step)))
        return torch.stack(alphas, 1) + torch.stack(betas[::-1], 1) - log_z[:, None, None]

    def load(self, transitions: Transitions) -> None:
        """Scores learned before (continuing a CRF checkpoint); forbidden moves stay pinned by :meth:`matrix`."""
        if len(transitions) != self.transitions.shape[0]:
            raise ValueError(f"{len(transitions)} CRF labels in the checkpoint, {self.transitions.shape[0]} in this run")
        allowed = self.allowed.numpy()
        with torch.no_grad():
            self.transitions.copy_(torch.from_numpy(transitions.matrix * allowed))
            self.start.copy_(torch.from_numpy(transitions.start))
            self.end.copy_(torch.from_numpy(transitions.end))

    def to_transitions(self) -> Transitions:
        with torch.no_grad():
            return Transitions(*(t.double().cpu().numpy().copy() for t in (self.matrix(), self.start, self.end)))


def _forward(emissions: torch.Tensor, mask: torch.Tensor, trans: torch.Tensor, start: torch.Tensor) -> list[torch.Tensor]:
    """The forward recursion's log-scores at every position, ``W x (B, L)``; past a row's last word, its
    last value carries on, so the final entry is every row's."""
    alphas = [start + emissions[:, 0]]
    for t in range(1, emissions.shape[1]):
        step = torch.logsumexp(alphas[-1].unsqueeze(2) + trans, dim=1) + emissions[:, t]
        alphas.append(torch.where(mask[:, t : t + 1], step, alphas[-1]))
    return alphas


def labelled_positions(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gather each row's labelled positions (word starts) to the left: emissions, tags, mask.

    Rows without a labelled position are dropped.
    """
    keep = labels != IGNORE
    lengths = keep.sum(dim=1)
    rows = lengths > 0
    logits, labels, keep, lengths = logits[rows], labels[rows], keep[rows], lengths[rows]
    width = int(lengths.max()) if len(lengths) else 0
    # stable sort puts labelled positions first, in their original order
    order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices[:, :width]
    emissions = logits.gather(1, order.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
    mask = torch.arange(width, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)
    tags = torch.where(mask, labels.gather(1, order), torch.zeros_like(order))
    return emissions, tags, mask


class CrfTagger(nn.Module):
    """A Hugging Face token classifier plus a CRF head; ``forward`` returns the classifier's output."""

    def __init__(self, model: nn.Module, scheme: LabelScheme) -> None:
        super().__init__()
        self.model = model
        self.crf = CrfHead(scheme)

    def forward(self, **inputs: Any) -> Any:
        return self.model(**inputs)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self.model(**model_inputs(batch)).logits
        emissions, tags, mask = labelled_positions(logits, batch["labels"])
        if emissions.shape[0] == 0:  # nothing labelled in the batch: a zero that keeps the graph
            return logits.sum() * 0.0
        return self.crf.nll(emissions, tags, mask)

    def distill_loss(self, batch: dict[str, torch.Tensor], soft: torch.Tensor, alpha: float, temperature: float) -> torch.Tensor:
        """``alpha * T^2 * KL(teacher || CRF marginals at T) + (1 - alpha) * NLL(gold)``, both summed over a
        window's words and averaged over windows (the NLL's own scale).

        ``soft`` holds the teacher's word-level distributions, left-aligned as :func:`labelled_positions`
        aligns the emissions. Matching the student's CRF marginals, not its emission softmax, is the
        posterior distillation of a CRF (Wang et al., 2020): the transitions take part, as in decoding.
        """
        logits = self.model(**model_inputs(batch)).logits
        emissions, tags, mask = labelled_positions(logits, batch["labels"])
        if emissions.shape[0] == 0:
            return logits.sum() * 0.0
        log_student = self.crf.log_marginals(emissions, mask, temperature)
        kl = (soft * (soft.clamp_min(1e-12).log() - log_student)).sum(-1)
        loss = alpha * temperature * temperature * (kl * mask).sum(1).mean()
        if alpha < 1.0:
            loss = loss + (1.0 - alpha) * self.crf.nll(emissions, tags, mask)
        return loss


def invalid_moves(label_rows: list[np.ndarray], scheme: LabelScheme) -> int:
    """Gold moves the scheme forbids between labelled positions (0 for labels built from spans)."""
    allowed, _ = allowed_transitions(scheme)
    bad = 0
    for row in label_rows:
        tags = row[row != IGNORE]
        bad += int((~allowed[tags[:-1], tags[1:]]).sum())
    return bad
