"""The committed JNLPBA model answers real biomedical sentences correctly, over the real app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from in_process import app_client
from paths import JNLPBA_BUNDLE

from service.app import create_app
from service.settings import Settings

pytestmark = pytest.mark.skipif(not (JNLPBA_BUNDLE / "model.onnx").exists(), reason="default model not present")

SENTENCE = (
    "IL-2 gene expression and NF-kappa B activation through CD28 requires reactive oxygen production by 5-lipoxygenase in human T cells."
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(Settings(model_path=JNLPBA_BUNDLE)) as (c, _):
        yield c


async def found(client: httpx.AsyncClient, text: str, **options: object) -> set[tuple[str, str]]:
    response = await client.post("/ner", json={"text": text, **options})
    assert response.status_code == 200
    entities = response.json()["entities"]
    assert all(text[e["start"] : e["end"]] == e["text"] for e in entities)
    return {(e["text"], e["label"]) for e in entities}


@pytest.mark.asyncio(loop_scope="module")
async def test_protein_dna_and_cells(client: httpx.AsyncClient) -> None:
    entities = await found(client, SENTENCE)
    assert {("IL-2 gene", "DNA"), ("NF-kappa B", "protein"), ("CD28", "protein"), ("5-lipoxygenase", "protein")} <= entities
    assert any(label == "cell_type" and "T cells" in text for text, label in entities)


@pytest.mark.asyncio(loop_scope="module")
async def test_cell_lines_and_promoters(client: httpx.AsyncClient) -> None:
    entities = await found(client, "The c-myc promoter binds E2F in HeLa cells and in peripheral blood monocytes.")
    assert {("c-myc promoter", "DNA"), ("E2F", "protein"), ("HeLa cells", "cell_line")} <= entities


@pytest.mark.asyncio(loop_scope="module")
async def test_long_abstract_is_windowed_not_truncated(client: httpx.AsyncClient) -> None:
    # About 9 windows of 128 tokens: the last sentence must still be tagged.
    text = " ".join(["Activation of the CD28 surface receptor provides a major costimulatory signal for T cell activation."] * 40)
    text += " Tyrosine phosphorylation of STAT1 was induced by interferon-alpha."
    response = await client.post("/ner", json={"text": text})
    assert int(response.headers["x-windows"]) >= 8
    tail = [e for e in response.json()["entities"] if e["start"] > len(text) - 70]
    assert {(e["text"], e["label"]) for e in tail} >= {("STAT1", "protein"), ("interferon-alpha", "protein")}


@pytest.mark.asyncio(loop_scope="module")
async def test_same_text_same_answer_alone_and_in_a_crowd(client: httpx.AsyncClient) -> None:
    alone = (await client.post("/ner", json={"text": SENTENCE})).json()["entities"]
    others = ["Short text about p53.", "The human T-cell leukemia virus type I Tax protein transactivates IL-2 receptor alpha gene. " * 5]
    crowd = await asyncio.gather(*(client.post("/ner", json={"text": t}) for t in [*others, SENTENCE, *others]))
    crowded = crowd[2].json()["entities"]
    assert alone, "the sentence has entities: the comparison below must not be over nothing"
    assert [(e["start"], e["end"], e["label"]) for e in crowded] == [(e["start"], e["end"], e["label"]) for e in alone]
    assert all(abs(a["score"] - b["score"]) <= 2e-4 for a, b in zip(crowded, alone))  # 4-decimal rounding of fp32 sums


async def test_batch_mates_proven_to_share_a_batch_change_nothing() -> None:
    """Two requests in one inference batch (shown by the batch numbers the engine reports), then
    in one decode call, get exactly the answers they get alone: the default graph has no
    per-batch quantisation, and the CRF recursions run per text whatever runs beside them."""
    # A long wait, so concurrent requests meet; one lane, which two lanes would split them over.
    app = create_app(Settings(max_wait_ms=300, max_batch_size=8, inference_lanes=1))
    async with app.router.lifespan_context(app):
        engine = app.state.engine
        other = "The human T-cell leukemia virus type I Tax protein transactivates IL-2 receptor alpha gene. " * 3
        alone, alone_other = await engine.recognize([SENTENCE]), await engine.recognize([other])
        decodes = engine.decoder.batches
        together, together_other = await asyncio.gather(engine.recognize([SENTENCE]), engine.recognize([other]))
        assert set(together.batches) & set(together_other.batches), "the two requests did not share a batch"
        assert engine.decoder.batches == decodes + 1, "back from one inference batch, they are decoded in one call"
        assert len(together.batches) == 1 and together.windows == 1 and together_other.windows == 1

        def spans(result: object) -> list[tuple[int, int, str]]:
            return [(e.start, e.end, e.label) for e in result.entities[0]]  # type: ignore[attr-defined]

        assert spans(alone) and spans(alone_other), "both texts have entities: the score comparison below is over something"
        assert spans(together) == spans(alone) and spans(together_other) == spans(alone_other)
        for a, b in zip(together.entities[0] + together_other.entities[0], alone.entities[0] + alone_other.entities[0]):
            assert abs(a.score - b.score) < 1e-4  # padding to a batch-mate's length moves fp32 sums by ~1e-7


@pytest.mark.asyncio(loop_scope="module")
async def test_readme_example_is_what_the_service_answers(client: httpx.AsyncClient) -> None:
    """The README's request and response, read from the README itself, against the running model."""
    import json
    import re

    readme = (JNLPBA_BUNDLE.parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### JNLPBA's five types at their best") :]
    sent = json.loads(re.search(r"-d '(\{.*?\})'", section, re.S).group(1))  # type: ignore[union-attr]
    shown = json.loads(re.search(r"```json\n(.*?)\n```", section, re.S).group(1))  # type: ignore[union-attr]
    response = await client.post("/ner", json=sent)
    answered = response.json()
    assert response.status_code == 200, answered
    assert shown["entities"], "the README's example shows entities"
    assert [(e["start"], e["end"], e["text"], e["label"], e["source"]) for e in answered["entities"]] == [
        (e["start"], e["end"], e["text"], e["label"], e["source"]) for e in shown["entities"]
    ]
    assert all(abs(a["score"] - b["score"]) <= 1e-3 for a, b in zip(answered["entities"], shown["entities"]))
    assert answered["model"] == shown["model"]


@pytest.mark.asyncio(loop_scope="module")
async def test_a_request_chooses_whether_a_name_keeps_one_type(client: httpx.AsyncClient) -> None:
    """``consistency``: the bundle's default on ``GET /model``, either value per request, and a
    clear 422 for a value that does not exist."""
    text = (
        "The Epstein-Barr virus BZLF1 gene promoter (Zp) is induced by phorbol esters. "
        "Zp activation requires two AP-1 sites, and Zp is silent in resting B cells."
    )
    assert (await client.get("/model")).json()["consistency"] == "first_mention"  # the JNLPBA bundle's default
    each = {c: (await client.post("/ner", json={"text": text, "consistency": c})).json()["entities"] for c in ("none", "first_mention")}
    assert (await client.post("/ner", json={"text": text})).json()["entities"] == each["first_mention"]
    zp = {c: [e["label"] for e in found if e["text"] == "Zp"] for c, found in each.items()}
    assert len(zp["none"]) == 3 and len(set(zp["none"])) == 2, "left to its context, the model types a later Zp otherwise"
    assert zp["first_mention"] == [zp["none"][0]] * 3
    refused = await client.post("/ner", json={"text": text, "consistency": "majority"})
    assert refused.status_code == 422 and "consistency" in refused.text
