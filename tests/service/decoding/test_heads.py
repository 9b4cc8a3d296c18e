"""Multi-head bundles: one encoder pass, every head decoded from its own columns, entities from all
heads in one list with their source, overlaps kept or resolved as asked."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx
import numpy as np
import pytest
from in_process import app_client
from tiny_bundle import write_two_head_bundle

from service.bundle_format import pipeline_for
from service.decoding.aggregate import Entity
from service.decoding.pipeline import Overlap
from service.errors import BundleError, UnsupportedOptionError
from service.runtime.bundle import load_bundle
from service.runtime.session import OnnxSession
from service.settings import Settings

TEXT = "the p53 kinase binds the myc gene in cells ."


@pytest.fixture(scope="module")
def two_heads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_two_head_bundle(tmp_path_factory.mktemp("heads") / "two")


def spans(found: Sequence[Entity]) -> list[tuple[str, str, str]]:
    return [(e.text, e.label, e.source) for e in found]


def test_one_encoder_pass_feeds_both_heads(two_heads: Path) -> None:
    bundle = load_bundle(two_heads)
    pipeline = pipeline_for(bundle.serving, bundle.encoder, bundle.scheme, bundle.pad_id)
    session = OnnxSession(bundle.onnx_path, len(bundle.scheme))
    calls: list[int] = []

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        calls.append(len(ids))
        return session.run(ids, mask)

    texts = [TEXT, "nothing", TEXT * 3]
    plan = pipeline.plan(texts)
    found = pipeline.finish(plan, pipeline.run(run, plan, batch_size=64))
    assert calls == [len(plan.rows)]  # every window once, both heads from that one pass
    assert spans(found[0]) == [
        ("p53 kinase", "protein", "jnlpba"),
        ("myc gene", "DNA", "jnlpba"),
        ("gene", "Species", "species"),
        ("cells", "Species", "species"),
    ]
    assert all(TEXT[e.start : e.end] == e.text for e in found[0])
    assert found[1] == [] and len(found[2]) == 12
    assert pipeline.labels == ("protein", "DNA", "Species")


def test_overlap_policies_and_head_choice(two_heads: Path) -> None:
    bundle = load_bundle(two_heads)
    pipeline = pipeline_for(bundle.serving, bundle.encoder, bundle.scheme, bundle.pad_id)
    session = OnnxSession(bundle.onnx_path, len(bundle.scheme))

    def answer(**options: object) -> list[tuple[str, str, str]]:
        return spans(pipeline.predict([TEXT], session.run, options=pipeline.options(**options))[0])  # type: ignore[arg-type]

    assert ("gene", "Species", "species") not in answer(overlap=Overlap.LONGEST)  # "myc gene" is longer
    assert ("myc gene", "DNA", "jnlpba") in answer(overlap=Overlap.LONGEST)
    best = answer(overlap=Overlap.HIGHEST_SCORE)
    assert len([s for s in best if s[0] in ("myc gene", "gene")]) == 1
    assert answer(heads=["species"]) == [("gene", "Species", "species"), ("cells", "Species", "species")]
    assert answer(labels=["DNA"]) == [("myc gene", "DNA", "jnlpba")]
    with pytest.raises(UnsupportedOptionError, match="unknown heads"):
        pipeline.options(heads=["bc5cdr"])
    with pytest.raises(UnsupportedOptionError, match="unknown labels"):
        pipeline.options(labels=["Chemical"])


def test_heads_must_match_config_labels(tmp_path: Path) -> None:
    folder = write_two_head_bundle(tmp_path / "bad")
    serving = json.loads((folder / "serving.json").read_text())
    serving["heads"][1]["labels"] = ["O", "B-Cell", "I-Cell"]
    (folder / "serving.json").write_text(json.dumps(serving))
    with pytest.raises(BundleError, match="not config.json's id2label"):
        load_bundle(folder)
    serving["heads"][1] = {"name": "jnlpba", "labels": ["O", "B-Species", "I-Species"]}
    (folder / "serving.json").write_text(json.dumps(serving))
    with pytest.raises(BundleError, match="head names must be distinct"):
        load_bundle(folder)


@pytest.fixture
async def client(two_heads: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(Settings(model_path=two_heads, max_text_chars=1000)) as (c, _):
        yield c


async def test_api_returns_every_heads_entities_with_their_source(client: httpx.AsyncClient) -> None:
    body = (await client.post("/ner", json={"text": TEXT})).json()
    assert [(e["text"], e["label"], e["source"]) for e in body["entities"]] == [
        ("p53 kinase", "protein", "jnlpba"),
        ("myc gene", "DNA", "jnlpba"),
        ("gene", "Species", "species"),
        ("cells", "Species", "species"),
    ]
    longest = (await client.post("/ner", json={"text": TEXT, "overlap": "longest"})).json()["entities"]
    assert [e["text"] for e in longest] == ["p53 kinase", "myc gene", "cells"]
    species = (await client.post("/ner", json={"text": TEXT, "heads": ["species"]})).json()["entities"]
    assert {e["source"] for e in species} == {"species"}
    refused = await client.post("/ner", json={"text": TEXT, "heads": ["nope"]})
    assert refused.status_code == 422 and "unknown heads" in refused.json()["error"]["message"]
    model = (await client.get("/model")).json()
    assert model["heads"] == [{"name": "jnlpba", "labels": ["protein", "DNA"]}, {"name": "species", "labels": ["Species"]}]
    assert model["labels"] == ["protein", "DNA", "Species"]
