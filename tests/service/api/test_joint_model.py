"""The committed five-head bundle: chemicals, diseases, genes, species and the JNLPBA types from one
call, answered exactly as the README shows, its golden self-check passing on this CPU."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from in_process import app_client
from paths import ROOT

from service.settings import Settings

JOINT = ROOT / "models" / "bioner-minilm-joint"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(Settings(model_path=JOINT)) as (c, _):
        yield c


@pytest.mark.asyncio(loop_scope="module")
async def test_readme_example_finds_a_drug_a_disease_a_gene_and_a_species(client: httpx.AsyncClient) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Chemicals, diseases, genes and species from one call") :]
    sent = json.loads(re.search(r"-d '(\{.*?\})'", section, re.S).group(1))  # type: ignore[union-attr]
    shown = json.loads(re.search(r"```json\n(.*?)\n```", section, re.S).group(1))  # type: ignore[union-attr]
    answered = (await client.post("/ner", json=sent)).json()
    spans = [(e["start"], e["end"], e["text"], e["label"], e["source"]) for e in answered["entities"]]
    assert spans == [(e["start"], e["end"], e["text"], e["label"], e["source"]) for e in shown["entities"]]
    assert all(abs(a["score"] - b["score"]) <= 1e-3 for a, b in zip(answered["entities"], shown["entities"]))
    assert {"Chemical", "Disease", "GENE", "Species"} <= {e["label"] for e in answered["entities"]}


@pytest.mark.asyncio(loop_scope="module")
async def test_five_heads_one_pass_and_a_passing_self_check(client: httpx.AsyncClient) -> None:
    model = (await client.get("/model")).json()
    assert [h["name"] for h in model["heads"]] == ["bc5cdr", "ncbi", "bc2gm", "linnaeus", "jnlpba"]
    assert model["self_check"]["passed"] is True
    text = "IL-2 gene expression requires NF-kappa B activation in human T cells treated with cisplatin."
    every = (await client.post("/ner", json={"text": text})).json()["entities"]
    assert {"jnlpba", "bc5cdr"} <= {e["source"] for e in every}
    one = (await client.post("/ner", json={"text": text, "heads": ["jnlpba"]})).json()["entities"]
    assert one and {e["source"] for e in one} == {"jnlpba"}
