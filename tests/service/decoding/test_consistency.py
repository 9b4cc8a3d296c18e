"""One type per name within a text: the rule on hand-made labels, then on the real JNLPBA model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from paths import JNLPBA_BUNDLE

from service.bundle_format import ServingConfig, pipeline_for
from service.decoding.aggregate import Entity, Words, entities_from_labels
from service.decoding.consistency import Consistency, first_mention_types, inherit_scores
from service.decoding.labels import LabelScheme
from service.errors import BundleError
from service.runtime.bundle import load_bundle
from service.runtime.session import OnnxSession

BIO = LabelScheme.from_id2label({0: "O", 1: "B-protein", 2: "I-protein", 3: "B-DNA", 4: "I-DNA"})


def one_token_per_word(text: str) -> tuple[np.ndarray, Words]:
    """Offsets and words of ``text`` split at spaces, each word one token."""
    offsets, start = [], 0
    for word in text.split(" "):
        offsets.append([start, start + len(word)])
        start += len(word) + 1
    n = len(offsets)
    words = Words(np.arange(n), np.arange(1, n + 1), np.full((n, 5), 0.2, dtype=np.float32))
    return np.array(offsets), words


def retyped(text: str, tags: list[str], scheme: LabelScheme = BIO) -> list[str]:
    offsets, words = one_token_per_word(text)
    labels = np.array([scheme.labels.index(t) for t in tags])
    return [scheme.labels[c] for c in first_mention_types(text, offsets, words, labels, scheme)]


def test_later_mentions_take_the_first_mentions_type() -> None:
    text = "Zp binds Zp and PLD binds Zp"
    tags = ["B-DNA", "O", "B-protein", "O", "B-protein", "O", "B-protein"]
    assert retyped(text, tags) == ["B-DNA", "O", "B-DNA", "O", "B-protein", "O", "B-DNA"]


def test_a_name_of_several_words_keeps_its_boundaries_and_prefixes() -> None:
    text = "NF kappa B and NF kappa B sites"
    tags = ["B-protein", "I-protein", "I-protein", "O", "B-DNA", "I-DNA", "I-DNA", "O"]
    assert retyped(text, tags) == ["B-protein", "I-protein", "I-protein", "O", "B-protein", "I-protein", "I-protein", "O"]


def test_names_match_exactly() -> None:
    """Case and extent matter: ``zp`` is not ``Zp``, and ``NF kappa`` is not ``NF kappa B``."""
    text = "Zp zp NF kappa B NF kappa"
    tags = ["B-DNA", "B-protein", "B-protein", "I-protein", "I-protein", "B-DNA", "I-DNA"]
    assert retyped(text, tags) == tags


def test_nothing_to_retype_returns_the_labels_themselves() -> None:
    offsets, words = one_token_per_word("Zp binds Zp")
    labels = np.array([3, 0, 3])
    assert first_mention_types("Zp binds Zp", offsets, words, labels, BIO) is labels


def test_bioes_prefixes_carry_over_and_a_missing_tag_keeps_the_type() -> None:
    bioes = LabelScheme.from_id2label({0: "O", 1: "S-DNA", 2: "S-protein", 3: "B-DNA", 4: "E-DNA", 5: "B-RNA", 6: "E-RNA"})
    assert retyped("Zp Zp", ["S-DNA", "S-protein"], bioes) == ["S-DNA", "S-DNA"]
    # no S-RNA in this scheme: the second mention cannot become RNA, so it stays as it was
    assert retyped("Zp x Zp", ["B-RNA", "O", "S-DNA"], bioes) == ["B-RNA", "O", "S-DNA"]


def test_retyped_mentions_are_scored_as_their_first_mention() -> None:
    own = [Entity(0, 2, "DNA", 0.74, "Zp"), Entity(9, 11, "protein", 0.79, "Zp"), Entity(16, 19, "protein", 0.9, "PLD")]
    after = [Entity(0, 2, "DNA", 0.74, "Zp"), Entity(9, 11, "DNA", 0.14, "Zp"), Entity(16, 19, "protein", 0.9, "PLD")]
    assert [(e.label, e.score) for e in inherit_scores(own, after)] == [("DNA", 0.74), ("DNA", 0.74), ("protein", 0.9)]


def test_retyped_alternatives_list_the_type_the_context_gave() -> None:
    text = "Zp binds Zp"
    offsets, words = one_token_per_word(text)
    probs = np.array([[0.05, 0.05, 0.0, 0.9, 0.0], [0.9, 0.05, 0.0, 0.05, 0.0], [0.1, 0.7, 0.0, 0.2, 0.0]], dtype=np.float32)
    labels = np.array([3, 0, 1])
    new = first_mention_types(text, offsets, words, labels, BIO)
    second = entities_from_labels(text, offsets, words, new, probs, BIO, alternatives=1)[1]
    assert (second.label, second.alternatives) == ("DNA", (("protein", pytest.approx(0.7)),))


def test_serving_json_carries_the_default(tmp_path: Path) -> None:
    config = ServingConfig(consistency=Consistency.FIRST_MENTION)
    assert ServingConfig.from_json(config.to_json()).consistency is Consistency.FIRST_MENTION
    assert "consistency" not in ServingConfig().to_json()  # bundles made before it read as they did
    with pytest.raises(BundleError, match="serving.json"):
        ServingConfig.from_json({"consistency": "majority"})


TEXTS = [
    "The Epstein-Barr virus BZLF1 gene promoter (Zp) is induced by phorbol esters. "
    "Zp activation requires two AP-1 sites, and Zp is silent in resting B cells.",
    "We cloned the glucocorticoid-responsive element (GRE) of the human gene. "
    "GRE binding by the receptor was lost when GRE sequences were mutated.",
    "Stimulation of phospholipase D (PLD) by PMA was blocked by staurosporine. PLD activity rose threefold.",
]


@pytest.mark.skipif(not (JNLPBA_BUNDLE / "model.onnx").exists(), reason="JNLPBA model not present")
def test_the_real_model_types_each_name_once_and_moves_no_boundary() -> None:
    bundle = load_bundle(JNLPBA_BUNDLE)
    session = OnnxSession(bundle.onnx_path, len(bundle.scheme))
    answers = {
        c: pipeline_for(bundle.serving, bundle.encoder, bundle.scheme, bundle.pad_id, consistency=c).predict(TEXTS, session.run)
        for c in Consistency
    }
    changed = 0
    for own, consistent in zip(answers[Consistency.NONE], answers[Consistency.FIRST_MENTION], strict=True):
        assert [(e.start, e.end) for e in own] == [(e.start, e.end) for e in consistent]
        first: dict[str, Entity] = {}
        for before, after in zip(own, consistent):
            decided = first.setdefault(after.text, after)
            assert after.label == decided.label
            if after.label != before.label:
                changed += 1
                assert after.score == decided.score
            else:
                assert after == before
    # the model, left to each mention's context, types a later "Zp" or "GRE" as a protein
    assert changed >= 1
