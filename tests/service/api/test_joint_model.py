"""The committed default, a five-head bundle: chemicals, diseases, genes, species and the JNLPBA types
from one call, answered exactly as the README shows, its golden self-check passing on this CPU, and
quiet on running text (0.1.0 tagged function words on abstract-length windows)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from in_process import app_client
from paths import JOINT_BUNDLE, ROOT

from service.settings import Settings

# Seven sentences, two windows of 128 tokens: what a served abstract looks like.
ABSTRACT = (
    "Effects of aldosterone on intracellular sodium and potassium in patients with essential hypertension. "
    "Mineralocorticoid receptors were measured in mononuclear leukocytes from 40 patients and 25 healthy volunteers. "
    "Binding of aldosterone was lower in patients than in controls, and the receptor density correlated with plasma renin activity. "
    "Treatment with spironolactone for eight weeks restored sodium levels and reduced blood pressure in most patients. "
    "In a second study, mice lacking the NR3C2 gene developed severe renal failure and hyperkalemia after a high salt diet. "
    "Expression of the epithelial sodium channel and of the serum and glucocorticoid regulated kinase SGK1 was reduced in their kidneys. "
    "These results suggest that mineralocorticoid receptor signalling in leukocytes reflects its activity in the kidney."
)
FUNCTION_WORDS = {"of", "on", "in", "and", "with", "the", "to", "was", "were", "for", "from", "after", "than", "that", "its", "a"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(Settings()) as (c, _):  # all defaults: the committed default bundle
        yield c


@pytest.mark.asyncio(loop_scope="module")
async def test_the_default_is_the_joint_bundle(client: httpx.AsyncClient) -> None:
    assert Settings().model_path.resolve() == JOINT_BUNDLE.resolve()
    assert (await client.get("/model")).json()["name"] == "bioner-minilm-joint"


@pytest.mark.asyncio(loop_scope="module")
async def test_heads_stay_quiet_on_an_abstract(client: httpx.AsyncClient) -> None:
    response = await client.post("/ner", json={"text": ABSTRACT})
    assert int(response.headers["x-windows"]) >= 2
    entities = response.json()["entities"]
    words = [(e["text"].split()[0].lower(), e["text"].split()[-1].lower(), e["text"]) for e in entities]
    bad = [text for first, last, text in words if first in FUNCTION_WORDS or last in FUNCTION_WORDS or ". " in text]
    assert len(bad) <= 2, bad  # 0.1.0: 45 of 132 spans ("Effects of", "than in", ...); 0.2.0: 1 of 36
    found = {(e["text"], e["label"]) for e in entities}
    assert {("aldosterone", "Chemical"), ("hyperkalemia", "Disease"), ("mice", "Species"), ("NR3C2 gene", "GENE")} <= found


@pytest.mark.asyncio(loop_scope="module")
async def test_readme_example_finds_a_drug_a_disease_a_gene_and_a_species(client: httpx.AsyncClient) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Ask it") :]
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
