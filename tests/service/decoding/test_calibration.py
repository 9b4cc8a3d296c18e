"""Temperature fitting, calibration error, and calibrated scores that never move a span."""

from __future__ import annotations

import functools
import itertools
import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.app import create_app
from service.decoding.aggregate import softmax
from service.decoding.calibration import crf_nll, minimise_over_temperature, nll, reliability
from service.decoding.crf import Transitions
from service.decoding.labels import LabelScheme
from service.decoding.paths import allowed_transitions
from service.settings import Settings


def test_fit_recovers_the_temperature_that_generated_the_labels() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(20_000, 5))
    true_t = 2.5  # labels drawn from softmax(logits / 2.5): the raw logits are over-confident
    probs = np.exp(logits / true_t) / np.exp(logits / true_t).sum(axis=1, keepdims=True)
    gold = np.array([rng.choice(5, p=p) for p in probs])
    fitted = minimise_over_temperature(lambda t: nll(logits, gold, t))  # the softmax fit of train/calibrate.py
    assert fitted == pytest.approx(true_t, rel=0.05)
    assert nll(logits, gold, fitted) < nll(logits, gold, 1.0)


def test_reliability_and_ece_by_hand() -> None:
    # 4 entities at 0.95 of which 2 right; 2 at 0.15 of which 1 right.
    result = reliability([0.95, 0.95, 0.95, 0.95, 0.15, 0.15], [True, True, False, False, True, False])
    assert result.counts[9] == 4 and result.counts[1] == 2
    assert result.ece == pytest.approx((4 * abs(0.5 - 0.95) + 2 * abs(0.5 - 0.15)) / 6)


async def test_temperature_changes_scores_not_spans_and_alternatives_are_offered(tiny_bundle: Path, tmp_path: Path) -> None:
    import shutil

    text = "The p53 kinase binds the myc gene in cells."

    async def answer(folder: Path, **options: object) -> list[dict[str, object]]:
        app = create_app(Settings(model_path=folder, max_text_chars=1000))
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
                response = await client.post("/ner", json={"text": text, **options})
                assert response.status_code == 200
                return response.json()["entities"]  # type: ignore[no-any-return]

    hot = tmp_path / "hot"
    shutil.copytree(tiny_bundle, hot)
    serving = json.loads((hot / "serving.json").read_text())
    (hot / "serving.json").write_text(json.dumps({**serving, "calibration": {"temperature": 3.0}}))
    raw, calibrated = await answer(tiny_bundle), await answer(hot)
    assert [(e["start"], e["end"], e["label"]) for e in raw] == [(e["start"], e["end"], e["label"]) for e in calibrated]
    assert raw and all(c["score"] < r["score"] for r, c in zip(raw, calibrated))  # T > 1 softens confident scores
    assert "alternatives" not in raw[0]
    with_alternatives = await answer(hot, alternatives=1)
    [protein, dna] = with_alternatives
    assert protein["alternatives"] == [{"label": "DNA", "score": protein["alternatives"][0]["score"]}]
    assert dna["alternatives"][0]["label"] == "protein" and 0 < dna["alternatives"][0]["score"] < dna["score"]


def test_max_aggregation_reads_calibrated_scores_from_the_subword_it_picked() -> None:
    from service.decoding.aggregate import Decoding, Strategy, entities_from_scores, softmax
    from service.decoding.labels import LabelScheme

    scheme = LabelScheme.from_id2label({0: "O", 1: "B-protein", 2: "I-protein"})
    # One word of two subwords: by raw scores the first is the surer (B-protein); at T = 4 the
    # second would look surer, but it says O. The score must stay the first subword's.
    logits = np.array([[0.0, 4.0, 0.0], [3.5, 6.0, -20.0]], dtype=np.float32)
    raw = softmax(logits)
    assert raw[0].max() > raw[1].max() and softmax(logits / 4)[1].max() > softmax(logits / 4)[0].max()
    offsets, word_ids = np.array([[0, 3], [3, 5]]), np.array([0, 0])
    [entity] = entities_from_scores("p53ab", offsets, word_ids, raw, scheme, Strategy.MAX, Decoding.GREEDY, None, softmax(logits / 4))
    assert entity.label == "protein" and entity.score == pytest.approx(float(softmax(logits / 4)[0, 1]))


def _tempered_crf_samples(
    rng: np.random.Generator, n: int, length: int, true_t: float
) -> tuple[list[np.ndarray], list[np.ndarray], LabelScheme, Transitions]:
    """Texts with gold labels drawn from a CRF whose whole score is divided by ``true_t``."""
    scheme = LabelScheme.from_id2label({0: "O", 1: "B-protein", 2: "I-protein", 3: "B-DNA", 4: "I-DNA"})
    crf = Transitions(rng.normal(0, 1.5, (5, 5)), rng.normal(0, 1, 5), rng.normal(0, 1, 5))
    allowed, start = allowed_transitions(scheme)
    paths = np.array(
        [p for p in itertools.product(range(5), repeat=length) if start[p[0]] and all(allowed[a, b] for a, b in zip(p, p[1:]))]
    )
    moves = crf.start[paths[:, 0]] + crf.end[paths[:, -1]] + crf.matrix[paths[:, :-1], paths[:, 1:]].sum(axis=1)
    words, gold = [], []
    for _ in range(n):
        emissions = np.log(softmax(rng.normal(0, 3, (length, 5))))
        score = (emissions[np.arange(length), paths].sum(axis=1) + moves) / true_t
        weights = np.exp(score - score.max())
        words.append(emissions)
        gold.append(paths[rng.choice(len(paths), p=weights / weights.sum())])
    return words, gold, scheme, crf


def test_crf_fit_recovers_the_temperature_that_generated_the_labels() -> None:
    rng = np.random.default_rng(1)
    words, gold, scheme, crf = _tempered_crf_samples(rng, 3000, 3, true_t=2.0)
    loss = functools.partial(crf_nll, words, gold, scheme, crf)
    fitted = minimise_over_temperature(loss, steps=30)
    assert fitted == pytest.approx(2.0, rel=0.1)
    assert loss(fitted) < loss(1.0)


def test_tempering_a_crf_keeps_its_best_path() -> None:
    from service.decoding.paths import viterbi

    scheme = LabelScheme.from_id2label({0: "O", 1: "B-protein", 2: "I-protein", 3: "B-DNA", 4: "I-DNA"})
    allowed, start = allowed_transitions(scheme)
    rng = np.random.default_rng(3)
    for _ in range(50):
        log_probs = np.log(softmax(rng.normal(0, 2, (12, 5))))
        crf = Transitions(rng.normal(0, 2, (5, 5)), rng.normal(0, 1, 5), rng.normal(0, 1, 5))
        raw = viterbi(log_probs, allowed, start, crf)
        for t in (0.3, 2.0, 7.0):
            assert np.array_equal(viterbi(log_probs / t, allowed, start, crf.tempered(t)), raw)


def test_crf_temperature_moves_marginal_scores_not_spans() -> None:
    from service.decoding.aggregate import Decoding, entities_from_scores
    from service.decoding.paths import tempered_crf_marginals

    scheme = LabelScheme.from_id2label({0: "O", 1: "B-protein", 2: "I-protein", 3: "B-DNA", 4: "I-DNA"})
    text, offsets, word_ids = "the p53 myc gene", np.array([[0, 3], [4, 7], [8, 11], [12, 16]]), np.arange(4)
    probs = softmax(np.array([[4.0, 0, 0, 0, 0], [0, 3.0, 0, 2.0, 0], [0, 0, 2.5, 0, 1.0], [1.0, 0, 0, 0, 2.0]]))
    rng = np.random.default_rng(2)
    crf = Transitions(rng.normal(0, 1, (5, 5)), rng.normal(0, 1, 5), rng.normal(0, 1, 5))
    answers = {
        t: entities_from_scores(text, offsets, word_ids, probs, scheme, decoding=Decoding.CRF, transitions=crf, temperature=t)
        for t in (1.0, 3.0)
    }
    [entity] = answers[3.0]
    assert [(e.start, e.end, e.label) for e in answers[1.0]] == [(entity.start, entity.end, entity.label)] == [(4, 11, "protein")]
    marginals = tempered_crf_marginals(np.log(probs.astype(np.float64)), scheme, crf, 3.0)
    assert entity.score == pytest.approx((marginals[1, 1] + marginals[2, 2]) / 2, rel=1e-5)
    assert entity.score < answers[1.0][0].score  # for this text, T = 3 softens the confident span
