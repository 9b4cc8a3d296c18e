"""Hypothesis over arbitrary Unicode for the whole path: JSON over HTTP -> windows -> spans -> JSON."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from service.app import create_app
from service.settings import Settings

NASTY = [
    "\u0301",
    "\u0308\u0301",
    "\u200d",
    "\u200b",
    "\u202e",
    "\u2066",
    "\x00",
    "\x07",
    "\ufeff",
    "\U0001f9ec",
    "\U0001f468\u200d\U0001f52c",
    "مرحبا",
    "שלום",
    "蛋白",
    "p53",
    "kinase",
    "myc",
    "gene",
    " ",
    "\n",
    "\t",
    "\u00a0",
    "\u3000",
    "-",
    "x" * 300,
]


@pytest.fixture(scope="module")
def client(tiny_bundle: Path) -> Iterator[TestClient]:
    # A long deadline: these tests are about what any text does to offsets, not about admission,
    # which on a busy machine may rightly refuse a 120,000-character text as too slow for 30 s.
    settings_ = Settings(model_path=tiny_bundle, max_text_chars=120_000, max_wait_ms=0, max_length=128, stride=32, request_timeout_s=300)
    with TestClient(create_app(settings_)) as c:
        yield c


def check(client: TestClient, text: str) -> int:
    """The properties every answer has; returns how many entities it checked."""
    response = client.post("/ner", json={"text": text})
    assert response.status_code == 200, response.text
    previous_end = 0
    entities = response.json()["entities"]
    for entity in entities:
        assert text[entity["start"] : entity["end"]] == entity["text"]
        assert entity["text"] and entity["text"] == entity["text"].strip()
        assert entity["start"] >= previous_end
        previous_end = entity["end"]
    return len(entities)


NASTY_TEXT = st.lists(st.sampled_from(NASTY), max_size=80).map("".join)
ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300) | NASTY_TEXT


def test_any_text_round_trips_over_http(client: TestClient) -> None:
    checked: list[int] = []  # entities checked per example: the properties must not hold over nothing

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @example("The p53 kinase binds the myc gene\u00a0in 蛋白 cells \U0001f9ec.")
    @given(ANY_TEXT)
    def round_trips(text: str) -> None:
        checked.append(check(client, text))

    round_trips()
    assert sum(checked) > 0, "no example produced an entity"


@pytest.mark.parametrize("text", ["a" * 100_000, "蛋" * 100_000, "p53 " * 25_000, "\u0301" * 100_000, "x" * 99_999 + "\U0001f9ec"])
def test_huge_repetitive_texts(client: TestClient, text: str) -> None:
    check(client, text)
