"""The committed 3-layer JNLPBA student (the fast variant) loads, passes its golden self-check, and
answers real sentences with the default model's types over the real app."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from in_process import app_client
from paths import FAST_BUNDLE

from service.settings import Settings

pytestmark = pytest.mark.skipif(not (FAST_BUNDLE / "model.onnx").exists(), reason="fast model not present")

SENTENCE = (
    "IL-2 gene expression and NF-kappa B activation through CD28 requires reactive oxygen production by 5-lipoxygenase in human T cells."
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(Settings(model_path=FAST_BUNDLE)) as (c, _):
        yield c


@pytest.mark.asyncio(loop_scope="module")
async def test_three_layers_a_crf_and_a_passing_self_check(client: httpx.AsyncClient) -> None:
    model = (await client.get("/model")).json()
    assert model["name"] == "bioner-minilm-l3-jnlpba" and model["decoding"] == "crf"
    assert model["labels"] == ["DNA", "RNA", "cell_line", "cell_type", "protein"]
    assert model["self_check"]["passed"] is True


@pytest.mark.asyncio(loop_scope="module")
async def test_protein_dna_and_cells(client: httpx.AsyncClient) -> None:
    response = await client.post("/ner", json={"text": SENTENCE})
    entities = response.json()["entities"]
    assert all(SENTENCE[e["start"] : e["end"]] == e["text"] for e in entities)
    found = {(e["text"], e["label"]) for e in entities}
    assert {("IL-2 gene", "DNA"), ("NF-kappa B", "protein"), ("CD28", "protein")} <= found
    assert any(label == "cell_type" and "T cells" in text for text, label in found)
