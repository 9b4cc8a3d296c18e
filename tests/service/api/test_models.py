"""Several bundles behind one service: chosen per request, listed at /models, one queue each,
metrics labelled by model, and a bad bundle among them refusing startup with one line."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from in_process import app_client
from tiny_bundle import write_bundle

from service.app import build_registry
from service.cli import main
from service.documents.formats import Format, read_documents
from service.documents.offsets import OffsetUnit
from service.errors import BundleError
from service.metrics import Metrics
from service.settings import Settings

TEXT = "The p53 kinase binds the myc gene in cells."
# The same hand-weighted graph read with other labels: p53 kinase is a gene, myc gene a chemical.
CHEM_LABELS = ["O", "B-gene", "I-gene", "B-chemical", "I-chemical"]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "prot": write_bundle(root / "prot"),
        "chem": write_bundle(root / "chem", labels=CHEM_LABELS, serving={"name": "tiny-chem", "version": "2"}),
    }


def _settings(bundles: dict[str, Path], **extra: object) -> Settings:
    models = ",".join(f"{name}={path}" for name, path in bundles.items())
    return Settings(models=models, max_text_chars=1000, max_texts_per_request=4, **extra)  # type: ignore[arg-type]


@pytest.fixture
async def client(bundles: dict[str, Path]) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(_settings(bundles)) as (c, _):
        yield c


def _found(body: dict[str, object]) -> list[tuple[str, str]]:
    return [(e["text"], e["label"]) for e in body["entities"]]  # type: ignore[attr-defined, index]


async def test_each_request_chooses_its_model(client: httpx.AsyncClient) -> None:
    default = (await client.post("/ner", json={"text": TEXT})).json()
    assert _found(default) == [("p53 kinase", "protein"), ("myc gene", "DNA")] and default["model"]["name"] == "prot"
    chem = (await client.post("/ner", json={"text": TEXT, "model": "chem"})).json()
    assert _found(chem) == [("p53 kinase", "gene"), ("myc gene", "chemical")]
    assert chem["model"]["name"] == "chem" and chem["model"]["version"] == "2"
    assert _found((await client.post("/ner", json={"text": TEXT, "model": "prot"})).json()) == _found(default)
    both = await client.post("/ner", json={"texts": [TEXT, "myc"], "model": "chem", "labels": ["chemical"]})
    assert [[e["label"] for e in ents] for ents in both.json()["entities"]] == [["chemical"], ["chemical"]]
    wrong_label = await client.post("/ner", json={"text": TEXT, "model": "prot", "labels": ["chemical"]})
    assert wrong_label.status_code == 422  # in the schema's union of labels, but not this model's


async def test_unknown_model_is_404_naming_the_known_ones(client: httpx.AsyncClient) -> None:
    response = await client.post("/ner", json={"text": TEXT, "model": "nope"})
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "unknown_model" and "'nope'" in error["message"] and "prot, chem" in error["message"]
    evaluate = await client.post("/evaluate", json={"format": "jsonl", "content": '{"text": "p53", "entities": []}', "model": "nope"})
    assert evaluate.status_code == 404 and evaluate.json()["error"]["code"] == "unknown_model"
    annotate = await client.post("/annotate?model=nope", content=b'{"text": "p53"}\n', headers={"content-type": "application/x-ndjson"})
    assert annotate.status_code == 404 and annotate.json()["error"]["code"] == "unknown_model"
    assert (await client.post("/ner", json={"text": TEXT, "model": 3})).status_code == 422


async def test_models_lists_every_model_and_marks_the_default(client: httpx.AsyncClient, bundles: dict[str, Path]) -> None:
    listed = (await client.get("/models")).json()
    assert [m["name"] for m in listed] == ["prot", "chem"]
    assert [m["default"] for m in listed] == [True, False]
    prot, chem = listed
    assert prot["labels"] == ["protein", "DNA"] and chem["labels"] == ["gene", "chemical"]
    assert prot["heads"] == [{"name": "prot", "labels": ["protein", "DNA"]}]
    assert chem["heads"] == [{"name": "chem", "labels": ["gene", "chemical"]}]
    assert (chem["version"], chem["max_length"], chem["stride"], chem["decoding"]) == ("2", 16, 4, "greedy")
    assert chem["provider"] == "CPUExecutionProvider" and len(chem["sha256"]) == 64
    assert set(prot) == {
        "name", "default", "version", "sha256", "heads", "labels", "max_length", "stride", "window_align", "provider", "decoding",
        "aggregation_strategy", "consistency",
    }  # fmt: skip
    assert prot["window_align"] == "tokens" and prot["consistency"] == "none"
    model = (await client.get("/model")).json()  # /model stays the default model's
    assert model["name"] == "prot" and model["labels"] == ["protein", "DNA"] and model["limits"]["max_text_chars"] == 1000
    assert (await client.get("/ready")).json() == {"status": "ready", "model": "prot"}


async def test_default_model_setting(bundles: dict[str, Path]) -> None:
    async with app_client(_settings(bundles, default_model="chem")) as (client, app):
        assert _found((await client.post("/ner", json={"text": TEXT})).json()) == [("p53 kinase", "gene"), ("myc gene", "chemical")]
        assert (await client.get("/model")).json()["name"] == "chem"
        assert [m["default"] for m in (await client.get("/models")).json()] == [False, True]
        assert app.state.engine is app.state.registry.get("chem")


async def test_documents_and_evaluation_take_the_model_too(client: httpx.AsyncClient) -> None:
    line = json.dumps({"id": "1", "text": TEXT}).encode()
    annotated = await client.post("/annotate?model=chem", content=line, headers={"content-type": "application/x-ndjson"})
    assert annotated.status_code == 200, annotated.text
    [passage] = read_documents(annotated.content, Format.JSONL, OffsetUnit.CODEPOINT).documents[0].passages
    assert {a.type for a in passage.annotations} == {"gene", "chemical"}
    assert {a.infons["model"] for a in passage.annotations} == {"chem"}
    gold = json.dumps({"text": TEXT, "entities": [{"start": 4, "end": 14, "label": "gene"}]})
    scored = (await client.post("/evaluate", json={"format": "jsonl", "content": gold, "model": "chem"})).json()
    assert scored["model"]["name"] == "chem" and scored["per_type"]["gene"]["f1"] == 1.0
    default = (await client.post("/evaluate", json={"format": "jsonl", "content": gold})).json()
    assert default["model"]["name"] == "prot" and default["micro"]["f1"] == 0.0


async def test_metrics_are_labelled_by_model(client: httpx.AsyncClient) -> None:
    await client.post("/ner", json={"texts": [TEXT, TEXT], "model": "chem"})
    await client.post("/ner", json={"text": TEXT})
    text = (await client.get("/metrics")).text
    assert 'bioner_texts_total{model="chem"} 2.0' in text and 'bioner_texts_total{model="prot"} 1.0' in text
    assert 'bioner_entities_total{label="chemical",model="chem"} 2.0' in text
    assert 'bioner_entities_total{label="protein",model="prot"} 1.0' in text
    for model in ("prot", "chem"):  # one batcher each: its own batches, queue and admission estimate
        assert f'bioner_batch_size_windows_count{{model="{model}"}}' in text
        assert f'bioner_inference_duration_seconds_count{{model="{model}"}}' in text
        assert f'bioner_queue_depth_windows{{model="{model}"}} 0.0' in text
        assert f'bioner_queue_wait_estimate_seconds{{model="{model}"}}' in text
        assert f'bioner_queue_duration_seconds_count{{model="{model}"}}' in text
    assert re.search(r'^bioner_model_info\{[^}]*model="chem",name="tiny-chem",[^}]*version="2"\} 1.0$', text, re.M)


async def test_openapi_lists_the_models_and_every_label(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    request = schema["components"]["schemas"]["NerRequest"]["properties"]
    assert request["model"]["enum"] == ["prot", "chem"] and request["model"]["examples"]
    assert request["labels"]["items"]["enum"] == ["protein", "DNA", "gene", "chemical"]
    assert schema["components"]["schemas"]["EvaluateRequest"]["properties"]["model"]["enum"] == ["prot", "chem"]
    [model] = [p for p in schema["paths"]["/annotate"]["post"]["parameters"] if p["name"] == "model"]
    assert model["schema"]["enum"] == ["prot", "chem"]
    listed = schema["paths"]["/models"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert listed["items"]["$ref"].endswith("/ModelEntryOut")
    entry = schema["components"]["schemas"]["ModelEntryOut"]
    assert {"name", "default", "heads", "labels", "max_length", "provider"} <= set(entry["required"]) and entry["examples"]
    assert "404" in schema["paths"]["/ner"]["post"]["responses"]


async def test_one_model_keeps_its_bundle_name(tiny_bundle: Path) -> None:
    async with app_client(Settings(model_path=tiny_bundle, max_text_chars=1000)) as (client, _):
        [entry] = (await client.get("/models")).json()
        assert entry["name"] == "tiny-test" and entry["default"] is True
        assert (await client.post("/ner", json={"text": TEXT, "model": "tiny-test"})).status_code == 200
        assert (await client.post("/ner", json={"text": TEXT, "model": "other"})).status_code == 404


async def test_models_dir_serves_every_bundle_folder(bundles: dict[str, Path], tmp_path: Path) -> None:
    for name in ("b-chem", "a-prot"):
        shutil.copytree(bundles["chem" if name == "b-chem" else "prot"], tmp_path / name)
    (tmp_path / "notes").mkdir()  # no model.onnx: not a bundle
    async with app_client(Settings(models_dir=tmp_path, max_text_chars=1000)) as (client, _):
        assert [(m["name"], m["default"]) for m in (await client.get("/models")).json()] == [("a-prot", True), ("b-chem", False)]
        chem = (await client.post("/ner", json={"text": TEXT, "model": "b-chem"})).json()
        assert _found(chem)[0] == ("p53 kinase", "gene")


def test_a_bad_bundle_among_several_refuses_startup_naming_it(
    bundles: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = shutil.copytree(bundles["chem"], tmp_path / "broken")
    (broken / "model.onnx").write_bytes(b"\x00garbage")
    settings = _settings({**bundles, "broken": broken})
    with pytest.raises(BundleError, match="^model 'broken': "):
        build_registry(settings, Metrics())
    models = f"prot={bundles['prot']},broken={broken},chem={bundles['chem']}"
    assert main(["serve", "--models", models, "--max-text-chars", "1000", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bioner: cannot start: model 'broken': ") and err.count("\n") == 1
    missing = f"prot={bundles['prot']},gone={tmp_path / 'nowhere'}"
    assert main(["serve", "--models", missing, "--max-text-chars", "1000", "--port", "1"]) == 2
    assert "model 'gone': " in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--models", "a b=x"], "model name 'a b'"),
        (["--models", "a=x,a=y"], "'a' is given twice"),
        (["--models", "a=x", "--default-model", "b"], "default_model 'b' is not among the models: a"),
        (["--default-model", "nope"], "default_model 'nope' is not loaded; the models are: tiny-test"),
    ],
)
def test_bad_model_settings_refuse_startup_with_one_line(
    tiny_bundle: Path, flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--model-path", str(tiny_bundle), *flags, "--max-text-chars", "1000", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bioner: cannot start: ") and message in err and err.count("\n") == 1


async def test_window_alignment_setting_reaches_every_model(bundles: dict[str, Path]) -> None:
    async with app_client(_settings(bundles, window_align="sentences")) as (client, _):
        assert [m["window_align"] for m in (await client.get("/models")).json()] == ["sentences", "sentences"]
        assert (await client.get("/model")).json()["window_align"] == "sentences"
        answer = await client.post("/ner", json={"text": " ".join([TEXT] * 12)})  # several windows, cut at sentence starts
        assert answer.status_code == 200
        assert _found(answer.json()) == [("p53 kinase", "protein"), ("myc gene", "DNA")] * 12
