"""Token types: which subwords were written in upper case, packed into the ids and split out only
where a model is fed, so the whole path between carries them unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tiny_bundle import build_cased_graph, build_graph, build_tokenizer, write_bundle

from service.app import build_engine
from service.bundle_format import ServingConfig, read_serving
from service.decoding.pipeline import pad_windows, run_rows
from service.decoding.token_types import ID_MASK, TokenTypes, case_flags, pack, strip, unpack
from service.decoding.windows import Encoded, TextEncoder, WindowSpan
from service.errors import BundleError, InferenceError
from service.metrics import Metrics
from service.runtime.bundle import load_bundle
from service.runtime.session import OnnxSession
from service.settings import Settings


def flags_of(text: str, spans: list[tuple[int, int]]) -> list[int]:
    return case_flags(text, np.asarray(spans, dtype=np.int64).reshape(-1, 2)).tolist()


def test_a_span_is_cased_when_any_of_its_characters_is_upper_case() -> None:
    text = "IL-2 in Jurkat cells"
    assert flags_of(text, [(0, 2), (2, 3), (3, 4), (5, 7), (8, 10), (10, 14), (15, 20)]) == [1, 0, 0, 0, 1, 0, 0]


def test_letters_that_lowercase_to_two_characters_keep_offsets_right() -> None:
    text = "İstanbul and Ab"  # 'İ'.lower() is two characters: the fast path would misalign
    assert len(text.lower()) != len(text)
    assert flags_of(text, [(0, 8), (9, 12), (13, 14), (14, 15)]) == [1, 0, 1, 0]


def test_no_spans_no_flags() -> None:
    assert flags_of("Any", []) == []


@given(st.text(alphabet=st.characters(categories=["Lu", "Ll", "Lt", "Nd", "Po", "Zs"]), max_size=40))
def test_flags_match_a_character_by_character_reading(text: str) -> None:
    spans = [(i, j) for i in range(len(text)) for j in range(i + 1, min(len(text), i + 4) + 1)]
    expected = [int(any(c.lower() != c for c in text[i:j])) for i, j in spans]
    assert flags_of(text, spans) == expected


def test_pack_and_unpack_round_trip_any_shape() -> None:
    ids = np.array([[2, 30521, 7, 0], [2, 5, 3, 0]], dtype=np.int64)
    types = np.array([[0, 1, 1, 0], [0, 0, 1, 0]], dtype=np.int64)
    packed = pack(ids, types)
    assert (packed > ID_MASK).sum() == 3
    back_ids, back_types = unpack(packed)
    assert (back_ids == ids).all() and (back_types == types).all()
    assert (strip(packed) == ids).all()


def test_a_cased_encoder_marks_content_not_specials_and_keeps_the_ids() -> None:
    plain, cased = TextEncoder(build_tokenizer()), TextEncoder(build_tokenizer(), TokenTypes.CASE)
    text = "The P53 kinase binds myc"
    ids, types = unpack(cased.encode(text).ids)
    assert (ids == plain.encode(text).ids).all()
    assert types.tolist() == [1, 1, 0, 0, 0]
    encoded = cased.encode(text)
    window_ids, window_types = unpack(cased.window_ids(encoded, WindowSpan(0, len(encoded))))
    assert window_types.tolist() == [0, 1, 1, 0, 0, 0, 0]  # [CLS] ... [SEP] stay type 0
    assert [e.ids.tolist() for e in cased.encode_batch([text, "the"])] == [encoded.ids.tolist(), plain.encode("the").ids.tolist()]


def test_with_token_types_shares_the_tokenizer() -> None:
    plain = TextEncoder(build_tokenizer())
    assert plain.with_token_types(TokenTypes.NONE) is plain
    cased = plain.with_token_types(TokenTypes.CASE)
    assert cased.tokenizer is plain.tokenizer and cased.token_types is TokenTypes.CASE and plain.token_types is TokenTypes.NONE


def test_serving_json_records_token_types_and_refuses_unknown_ones(tmp_path: Path) -> None:
    assert "token_types" not in ServingConfig().to_json()  # the default is not written: old bundles read the same
    assert ServingConfig.from_json(ServingConfig(token_types=TokenTypes.CASE).to_json()).token_types is TokenTypes.CASE
    write_bundle(tmp_path / "odd", serving={"token_types": "shape"})
    with pytest.raises(BundleError, match="token_types|shape"):
        read_serving(tmp_path / "odd")


def test_the_session_feeds_the_types_and_a_model_sees_them(tmp_path: Path) -> None:
    write_bundle(tmp_path, graph=build_cased_graph())
    session = OnnxSession(tmp_path / "model.onnx", 5)
    encoder = TextEncoder(build_tokenizer(), TokenTypes.CASE)
    rows = [encoder.window_ids(e, _whole(e)) for e in encoder.encode_batch(["The cells", "the cells"])]
    cased, lower = run_rows(session.run, rows)
    assert cased[1].argmax() == 1 and lower[1].argmax() == 0  # "The" opens a protein, "the" does not
    ids, mask = pad_windows(rows)
    with pytest.raises(InferenceError, match="token types"):
        OnnxSession(write_bundle(tmp_path / "plain") / "model.onnx", 5).run(ids, mask)


@pytest.mark.parametrize("token_types", [TokenTypes.CASE, TokenTypes.NONE])
async def test_served_answers_follow_the_bundles_token_types(tmp_path: Path, token_types: TokenTypes) -> None:
    bundle = write_bundle(tmp_path, graph=build_cased_graph(), serving={"token_types": token_types.value})
    assert load_bundle(bundle).encoder.token_types is token_types
    engine = build_engine(Settings(model_path=bundle, max_length=16, stride=4, max_text_chars=1000), Metrics())
    engine.start()
    try:
        found = (await engine.recognize(["The cells bind.", "the cells bind."], None)).entities
    finally:
        await engine.drain(5)
    cased = [(e.text, e.label) for e in found[0]]
    assert cased == ([("The", "protein")] if token_types is TokenTypes.CASE else [])
    assert found[1] == []


def test_a_bundle_that_marks_types_its_graph_cannot_read_is_refused_at_load(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path, graph=build_graph(), serving={"token_types": "case"})
    with pytest.raises(BundleError, match="token types"):
        build_engine(Settings(model_path=bundle, max_length=16, stride=4, max_text_chars=1000), Metrics())


def _whole(encoded: Encoded) -> WindowSpan:
    return WindowSpan(0, len(encoded))
