"""One type per name within a text: the rule on hand-made labels, then on the real JNLPBA model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from paths import JNLPBA_BUNDLE

from service.bundle_format import ServingConfig, pipeline_for
from service.decoding.aggregate import Decoding, Entity, Words, decode_tags, entities_from_spans
from service.decoding.consistency import Consistency, first_mention_across, first_mention_documents, first_mention_types
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


def retyped(text: str, tags: list[str], scheme: LabelScheme = BIO) -> list[tuple[str, str]]:
    """``(name, type)`` of every span of ``tags`` after the rule."""
    offsets, words = one_token_per_word(text)
    parts = [(scheme.prefixes[scheme.labels.index(t)], scheme.types[scheme.labels.index(t)]) for t in tags]
    spans, _ = first_mention_types(text, offsets, words, decode_tags([p for p, _ in parts], [k for _, k in parts]))
    names = text.split(" ")
    return [(" ".join(names[a:b]), kind) for a, b, kind in spans]


def test_later_mentions_take_the_first_mentions_type() -> None:
    text = "Zp binds Zp and PLD binds Zp"
    tags = ["B-DNA", "O", "B-protein", "O", "B-protein", "O", "B-protein"]
    assert retyped(text, tags) == [("Zp", "DNA"), ("Zp", "DNA"), ("PLD", "protein"), ("Zp", "DNA")]


def test_a_name_of_several_words_is_retyped_whole() -> None:
    text = "NF kappa B and NF kappa B sites"
    tags = ["B-protein", "I-protein", "I-protein", "O", "B-DNA", "I-DNA", "I-DNA", "O"]
    assert retyped(text, tags) == [("NF kappa B", "protein"), ("NF kappa B", "protein")]


def test_names_match_exactly() -> None:
    """Case and extent matter: ``zp`` is not ``Zp``, and ``NF kappa`` is not ``NF kappa B``."""
    text = "Zp zp NF kappa B NF kappa"
    tags = ["B-DNA", "B-protein", "B-protein", "I-protein", "I-protein", "B-DNA", "I-DNA"]
    assert retyped(text, tags) == [("Zp", "DNA"), ("zp", "protein"), ("NF kappa B", "protein"), ("NF kappa", "DNA")]


def test_names_without_a_letter_or_digit_are_left_alone() -> None:
    assert retyped("- x -", ["B-DNA", "O", "B-protein"]) == [("-", "DNA"), ("-", "protein")]


@pytest.mark.parametrize(
    ("scheme", "tags"),
    [
        # IO: a retyped span next to a span of its new type must not merge with it
        (LabelScheme.from_id2label({0: "O", 1: "DNA", 2: "protein"}), ["DNA", "O", "DNA", "protein"]),
        # greedy BIO: a stray I- opens a span; retyped, it stays a span of its own
        (BIO, ["B-DNA", "O", "B-DNA", "I-protein"]),
    ],
)
def test_boundaries_never_move(scheme: LabelScheme, tags: list[str]) -> None:
    offsets, words = one_token_per_word("Zp x Zp Zp")
    parts = [(scheme.prefixes[scheme.labels.index(t)], scheme.types[scheme.labels.index(t)]) for t in tags]
    spans = decode_tags([p for p, _ in parts], [k for _, k in parts])
    labels = np.array([scheme.labels.index(t) for t in tags])
    confidence = np.full((4, len(scheme)), 0.5, dtype=np.float32)
    new, decided_by = first_mention_types("Zp x Zp Zp", offsets, words, spans)
    entities = entities_from_spans("Zp x Zp Zp", offsets, words, new, labels, confidence, scheme, decided_by=decided_by)
    assert [(e.start, e.end) for e in entities] == [(0, 2), (5, 7), (8, 10)]
    assert [e.label for e in entities] == ["DNA", "DNA", "DNA"] and decided_by == [None, None, 0]


def test_retyped_mentions_are_scored_as_their_first_mention_with_their_own_alternatives() -> None:
    text = "Zp binds Zp"
    offsets, words = one_token_per_word(text)
    probs = np.array([[0.05, 0.05, 0.0, 0.9, 0.0], [0.9, 0.05, 0.0, 0.05, 0.0], [0.1, 0.7, 0.0, 0.2, 0.0]], dtype=np.float32)
    labels = np.array([3, 0, 1])
    spans, decided_by = first_mention_types(text, offsets, words, [(0, 1, "DNA"), (2, 3, "protein")])
    first, second = entities_from_spans(text, offsets, words, spans, labels, probs, BIO, alternatives=1, decided_by=decided_by)
    assert (second.label, second.score) == ("DNA", pytest.approx(0.9)) and first.score == pytest.approx(0.9)
    assert second.alternatives == (("protein", pytest.approx(0.7)),)


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
@pytest.mark.parametrize("decoding", list(Decoding))
def test_the_real_model_types_each_name_once_and_moves_no_boundary(decoding: Decoding) -> None:
    bundle = load_bundle(JNLPBA_BUNDLE)
    session = OnnxSession(bundle.onnx_path, len(bundle.scheme))

    def answers(consistency: Consistency) -> list[list[Entity]]:
        pipeline = pipeline_for(bundle.serving, bundle.encoder, bundle.scheme, bundle.pad_id, consistency=consistency, decoding=decoding)
        return pipeline.predict(TEXTS, session.run)

    changed = 0
    for own, consistent in zip(answers(Consistency.NONE), answers(Consistency.FIRST_MENTION), strict=True):
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


def test_across_passages_the_first_mention_decides_per_head_and_alternatives_trade_places() -> None:
    title = [Entity(0, 2, "DNA", 0.8, "Zp", source="jnlpba"), Entity(5, 6, "protein", 0.9, "-", source="jnlpba")]
    abstract = [
        Entity(0, 2, "protein", 0.6, "Zp", alternatives=(("DNA", 0.3), ("RNA", 0.05)), source="jnlpba"),
        Entity(4, 6, "cell_line", 0.7, "Zp", source="other"),  # another head: its own names
        Entity(8, 9, "DNA", 0.5, "-", source="jnlpba"),  # no letter or digit: left alone
    ]
    _, after = first_mention_across([title, abstract])
    assert [(e.label, e.score) for e in after] == [("DNA", 0.8), ("cell_line", 0.7), ("DNA", 0.5)]
    assert after[0].alternatives == (("protein", 0.6), ("RNA", 0.05))
    assert first_mention_documents([1, 1], [title, abstract]) == [title, abstract]  # two documents: nothing carries
