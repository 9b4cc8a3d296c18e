"""POST /evaluate gives exactly the figures `bioner evaluate` computes on the same data and model."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from in_process import app_client
from paths import JNLPBA_BUNDLE

from service.app import create_app
from service.settings import Settings

# Tiny-bundle vocabulary: p53 (B-protein), kinase (I-protein), myc (B-DNA), gene (I-DNA).
DOCS = [
    ("d1", "the p53 kinase binds the myc gene in cells .", "T1\tprotein 4 14\tp53 kinase\nT2\tDNA 25 33\tmyc gene\n"),
    ("d2", "p53 binds myc in cells", "T1\tprotein 0 3\tp53\nT2\tprotein 10 13\tmyc\n"),  # one wrong type
    ("d3", "the kinase gene", "T1\tDNA 11 15\tgene\n"),  # a stray I- tag the model decodes differently
    ("d4", "nothing here at all", ""),
]
COLUMNS = "the\tO\np53\tB-protein\nkinase\tI-protein\nbinds\tO\nmyc\tB-DNA\ngene\tI-DNA\n\nmyc\tB-protein\ncells\tO\n"
JSONL = "\n".join(json.dumps({"text": t, "entities": [{"start": 4, "end": 7, "label": "protein"}]}) for t in ("the p53 x", "the myc y"))


@pytest.fixture
async def client(tiny_bundle: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(Settings(model_path=tiny_bundle, max_text_chars=1000, max_texts_per_request=2)) as (c, _):
        yield c


def cli_report(model: Path, data: Path, *flags: str) -> dict[str, object]:
    pytest.importorskip("torch")
    from train.cli import main

    out = data.parent / "report.json"
    assert main(["evaluate", "--model", str(model), "--data", str(data), "--report", str(out), *flags]) == 0
    return json.loads(out.read_text())


def same_scores(served: dict[str, object], cli: dict[str, object]) -> None:
    assert served["micro"] == cli["micro"] and served["macro"] == cli["macro"] and served["per_type"] == cli["per_type"]


def brat_gold(tmp_path: Path) -> tuple[Path, dict[str, object]]:
    """DOCS as a brat folder (for `bioner evaluate`) and as the same gold in an /evaluate body."""
    folder = tmp_path / "brat"
    folder.mkdir()
    for doc_id, text, ann in DOCS:
        (folder / f"{doc_id}.txt").write_text(text)
        (folder / f"{doc_id}.ann").write_text(ann)
    return folder, {"format": "brat", "documents": [{"id": i, "text": t, "ann": a} for i, t, a in DOCS]}


async def test_brat_equals_bioner_evaluate(client: httpx.AsyncClient, tiny_bundle: Path, tmp_path: Path) -> None:
    folder, body = brat_gold(tmp_path)
    response = await client.post("/evaluate", json=body)
    assert response.status_code == 200, response.text
    served = response.json()
    assert served["documents"] == 4 and served["model"]["name"] == "tiny-test"
    assert 0 < served["micro"]["f1"] < 1  # right and wrong answers both present: a test that can fail
    same_scores(served, cli_report(tiny_bundle, folder))
    only_dna = (await client.post("/evaluate", json={**body, "types": ["DNA"]})).json()
    same_scores(only_dna, cli_report(tiny_bundle, folder, "--types", "DNA"))
    dev = (await client.post("/evaluate", json={**body, "dev_fraction": 0.5, "seed": 3})).json()
    assert dev["documents"] == 2
    same_scores(dev, cli_report(tiny_bundle, folder, "--dev-fraction", "0.5", "--seed", "3"))


@pytest.mark.parametrize(("kind", "content", "suffix"), [("columns", COLUMNS, ".tsv"), ("jsonl", JSONL, ".jsonl")])
async def test_columns_and_jsonl_equal_bioner_evaluate(
    client: httpx.AsyncClient, tiny_bundle: Path, tmp_path: Path, kind: str, content: str, suffix: str
) -> None:
    path = tmp_path / f"gold{suffix}"
    path.write_text(content)
    response = await client.post("/evaluate", json={"format": kind, "content": content})
    assert response.status_code == 200, response.text
    same_scores(response.json(), cli_report(tiny_bundle, path))


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"format": "brat", "content": "x"}, 422),
        ({"format": "columns", "documents": [{"id": "a", "text": "b"}]}, 422),
        ({"format": "brat", "documents": [{"id": "a", "text": "p53", "ann": "T1\tprotein 0 99\tp53"}]}, 422),
        ({"format": "columns", "content": "p53\tB-WHAT?\n"}, 422),
        ({"format": "jsonl", "content": "{not json"}, 422),
        ({"format": "jsonl", "content": '{"text": "p53", "entities": [{"end": 3, "label": "protein"}]}'}, 422),  # no start
        ({"format": "jsonl", "content": '{"tokens": ["p53"], "ner_tags": ["B-protein", "O"]}'}, 422),  # tags outrun tokens
        ({"format": "brat", "documents": [{"id": "a", "text": "p53 " * 300}]}, 413),
    ],
)
async def test_bad_gold_is_a_clear_4xx(client: httpx.AsyncClient, body: dict[str, object], status: int) -> None:
    response = await client.post("/evaluate", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["request_id"]


@pytest.mark.corpus
@pytest.mark.skipif(not (JNLPBA_BUNDLE / "model.onnx").exists(), reason="default model not present")
async def test_default_model_on_jnlpba_equals_bioner_evaluate(shared_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "jnlpba"
    folder.mkdir()
    for txt in sorted((shared_data / "jnlpba" / "train").glob("*.txt"))[:12]:
        (folder / txt.name).write_text(txt.read_text(encoding="utf-8"), encoding="utf-8")
        (folder / txt.with_suffix(".ann").name).write_text(txt.with_suffix(".ann").read_text(encoding="utf-8"), encoding="utf-8")
    documents = [
        {"id": t.stem, "text": t.read_text(encoding="utf-8"), "ann": t.with_suffix(".ann").read_text(encoding="utf-8")}
        for t in sorted(folder.glob("*.txt"))
    ]
    app = create_app(Settings(model_path=JNLPBA_BUNDLE, max_texts_per_request=5))  # several chunks through the batcher
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", timeout=120) as c:
            response = await c.post("/evaluate", json={"format": "brat", "documents": documents})
    assert response.status_code == 200, response.text
    same_scores(response.json(), cli_report(JNLPBA_BUNDLE, folder))


async def test_a_decoding_chosen_per_request_scores_as_bioner_evaluate_does(
    client: httpx.AsyncClient, tiny_bundle: Path, tmp_path: Path
) -> None:
    """A lab scores the decodings on its own gold before it picks one: d3's stray I- tag is
    repaired into a span by greedy decoding (the tiny bundle's default), not by the constrained path."""
    folder, body = brat_gold(tmp_path)
    default = (await client.post("/evaluate", json=body)).json()
    constrained = await client.post("/evaluate", json={**body, "decoding": "constrained"})
    assert constrained.status_code == 200, constrained.text
    assert constrained.json()["settings"]["decoding"] == "constrained" and default["settings"]["decoding"] == "greedy"
    assert constrained.json()["micro"] != default["micro"]
    same_scores(constrained.json(), cli_report(tiny_bundle, folder, "--decoding", "constrained"))
    no_crf = await client.post("/evaluate", json={**body, "decoding": "crf"})  # the tiny bundle has no transition scores
    assert no_crf.status_code == 422 and no_crf.json()["error"]["code"] == "invalid_request"  # as /ner answers it
    empty = await client.post("/evaluate", json={"format": "jsonl", "content": "", "decoding": "crf"})
    assert empty.status_code == 422, "refused even with nothing to score, never reported as what scored"
    chosen = (await client.post("/evaluate", json={**body, "aggregation_strategy": "average", "consistency": "first_mention"})).json()
    assert (chosen["settings"]["aggregation_strategy"], chosen["settings"]["consistency"]) == ("average", "first_mention")
    assert default["settings"]["consistency"] == "none"
    unknown = await client.post("/evaluate", json={**body, "decoding": "beam"})
    assert unknown.status_code == 422
