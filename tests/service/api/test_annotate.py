"""Documents through the service (POST /annotate) and whole corpora through ``bioner annotate``:
each format in and out, every bad input a 400 with the reason, a resumable and deterministic
CLI that a kill cannot leave half-written, and the Ray run equal to the local one."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from in_process import app_client
from paths import JNLPBA_BUNDLE, ROOT

from service.bulk.files import MANIFEST
from service.documents.formats import Format, read_documents
from service.documents.offsets import OffsetUnit
from service.settings import Settings

# Tiny-bundle vocabulary: p53 (B-protein), kinase (I-protein), myc (B-DNA), gene (I-DNA).
PUBTATOR = (
    "1|t|the p53 kinase\n1|a|binds the myc gene in cells .\n1\t4\t14\tp53 kinase\tGold\tX1\n\n2|t|nothing here\n2|a|myc gene 😀 p53\n\n"
)
BIOC_XML = (
    "<?xml version='1.0' encoding='UTF-8'?><!DOCTYPE collection SYSTEM 'BioC.dtd'><collection><source>t</source><date>d</date>"
    "<key>k</key><document><id>7</id><infon key='journal'>J</infon><passage><infon key='type'>title</infon><offset>0</offset>"
    "<text>p53 kinase and myc gene</text></passage><passage><offset>100</offset><text>the 😀 p53 binds</text></passage>"
    "</document></collection>"
)


@pytest.fixture
async def client(tiny_bundle: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(Settings(model_path=tiny_bundle, max_text_chars=1000, max_texts_per_request=2)) as (c, _):
        yield c


def _ours(collection_bytes: bytes, fmt: Format, unit: OffsetUnit = OffsetUnit.CODEPOINT) -> list[tuple[str, int, int, str, str]]:
    collection = read_documents(collection_bytes, fmt, unit)
    return [
        (d.id, a.start, a.end, a.type, p.text[a.start : a.end])
        for d in collection.documents
        for p in d.passages
        for a in p.annotations
        if a.infons.get("annotator") == "bioner"
    ]


async def test_pubtator_in_pubtator_out_with_entities_added(client: httpx.AsyncClient) -> None:
    response = await client.post("/annotate", content=PUBTATOR.encode(), headers={"content-type": "text/plain"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain") and response.headers["x-passages"] == "4"
    lines = response.text.splitlines()
    assert "1\t4\t14\tp53 kinase\tGold\tX1" in lines  # the input's own annotation is kept
    found = _ours(response.content, Format.PUBTATOR)
    assert ("1", 4, 14, "protein", "p53 kinase") in found and ("1", 10, 18, "DNA", "myc gene") in found
    assert ("2", 0, 8, "DNA", "myc gene") in found and ("2", 11, 14, "protein", "p53") in found  # after the emoji
    kept_out = await client.post("/annotate?keep_existing=false", content=PUBTATOR.encode(), headers={"content-type": "text/plain"})
    assert "Gold" not in kept_out.text and "X1" not in kept_out.text


async def test_decoding_is_chosen_per_request_as_on_ner(client: httpx.AsyncClient) -> None:
    """``/annotate`` takes ``/ner``'s decoding choices: "the kinase gene" has a stray I- tag that
    greedy decoding (the tiny bundle's default) repairs into a span and the constrained path does not."""
    stray = "1|t|the kinase gene\n1|a|p53 binds\n\n"
    headers = {"content-type": "text/plain"}
    answers = {}
    for decoding in ("greedy", "constrained"):
        response = await client.post(f"/annotate?decoding={decoding}", content=stray.encode(), headers=headers)
        assert response.status_code == 200, response.text
        answers[decoding] = _ours(response.content, Format.PUBTATOR)
        ner = (await client.post("/ner", json={"texts": ["the kinase gene", "p53 binds"], "decoding": decoding})).json()["entities"]
        assert [(s, e, t) for _, s, e, t, _ in answers[decoding]] == [(x["start"], x["end"], x["label"]) for ents in ner for x in ents]
    default = await client.post("/annotate", content=stray.encode(), headers=headers)
    assert _ours(default.content, Format.PUBTATOR) == answers["greedy"] != answers["constrained"]
    for body in (stray, ""):  # no CRF head here: refused before the body is read, so an empty one too
        refused = await client.post("/annotate?decoding=crf", content=body.encode(), headers=headers)
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("unit", list(OffsetUnit))
async def test_bioc_xml_keeps_the_collection_and_adds_traceable_annotations(client: httpx.AsyncClient, unit: OffsetUnit) -> None:
    response = await client.post(f"/annotate?offsets={unit.value}", content=BIOC_XML.encode(), headers={"content-type": "application/xml"})
    assert response.status_code == 200, response.text
    collection = read_documents(response.content, Format.BIOC_XML, unit)
    assert (collection.source, collection.key, collection.documents[0].infons) == ("t", "k", {"journal": "J"})
    title, body = collection.documents[0].passages
    assert body.offset == 100  # a passage keeps its own offset
    assert [(a.text, a.type) for a in title.annotations] == [("p53 kinase", "protein"), ("myc gene", "DNA")]
    assert [(a.text, a.type) for a in body.annotations] == [("p53", "protein")]
    infons = title.annotations[0].infons
    assert infons["model_sha256"] and infons["model"] and 0 < float(infons["score"]) <= 1
    assert infons["source"] == "tiny-test"  # the head that found it (one head, named after the model)
    raw = response.text
    expected_offset = {"codepoint": 106, "utf16": 107, "utf8": 109}[unit.value]  # 😀: 2 UTF-16 units, 4 UTF-8 bytes
    assert f'offset="{expected_offset}" length="3"' in raw


@pytest.mark.parametrize(
    ("content_type", "query", "body", "status", "code"),
    [
        ("application/json", "", BIOC_XML, 400, "malformed_document"),
        ("application/xml", "", "<collection><document>", 400, "malformed_document"),
        (
            "application/xml",
            "",
            '<!DOCTYPE c [<!ENTITY a "aa"><!ENTITY b "&a;&a;">]><collection><key>&b;</key></collection>',
            400,
            "malformed_document",
        ),
        ("text/plain", "", "1|t|p53\n1\t0\t99\tp53\tprotein\n", 400, "malformed_document"),
        ("text/plain", "", "1|t|p53\nbroken line\n", 400, "malformed_document"),
        ("image/png", "", "x", 422, "invalid_request"),
        ("text/plain", "?output=docx", PUBTATOR, 422, "invalid_request"),
        ("text/plain", "?labels=GENE", PUBTATOR, 422, "invalid_request"),
        ("text/plain", "?offsets=bytes", PUBTATOR, 422, "invalid_request"),
    ],
)
async def test_bad_documents_are_clear_errors(
    client: httpx.AsyncClient, content_type: str, query: str, body: str, status: int, code: str
) -> None:
    response = await client.post(f"/annotate{query}", content=body.encode(), headers={"content-type": content_type})
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert (await client.post("/ner", json={"text": "p53 kinase"})).status_code == 200  # nothing else hurt


async def test_every_output_format_and_metrics(client: httpx.AsyncClient) -> None:
    for fmt in (Format.BIOC_XML, Format.BIOC_JSON, Format.PUBTATOR, Format.JSONL):
        response = await client.post(f"/annotate?output={fmt.value}", content=PUBTATOR.encode(), headers={"content-type": "text/plain"})
        assert response.status_code == 200
        assert sorted(_ours(response.content, fmt)) == sorted(_ours((await _pubtator(client)).content, Format.PUBTATOR))
    metrics = (await client.get("/metrics")).text
    assert 'bioner_requests_total{method="POST",route="/annotate",status="200"}' in metrics


async def _pubtator(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post("/annotate", content=PUBTATOR.encode(), headers={"content-type": "text/plain"})


# ------------------------------------------------------------------------------------ bioner annotate
def _corpus(folder: Path, shared: Path | None, files: int, per_file: int) -> Path:
    folder.mkdir(parents=True)
    if shared is None:
        blocks = [PUBTATOR.strip()] * per_file
    else:
        blocks = (shared / "bc5cdr-original" / "CDR_DevelopmentSet.PubTator.txt").read_text().split("\n\n")
    for i in range(files):
        (folder / f"part{i:02d}.pubtator").write_text("\n\n".join(blocks[i * per_file : (i + 1) * per_file] or blocks[:per_file]) + "\n\n")
    (folder / "notes").mkdir()
    (folder / "notes" / "a.txt").write_text("The p53 kinase binds the myc gene.\n")
    return folder


def _command(model: Path, inputs: Path, output: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "service", "annotate", str(inputs), "-o", str(output), "--model-path", str(model), "--no-progress"] + [
        *flags
    ]


def _annotate(model: Path, inputs: Path, output: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_command(model, inputs, output, *flags), capture_output=True, text=True, cwd=ROOT, timeout=300)


def _outputs(folder: Path) -> dict[str, bytes]:
    """Every file a run left, hidden partials included; the settings manifest aside."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}


def test_cli_is_deterministic_resumable_and_process_count_blind(tiny_bundle: Path, tmp_path: Path) -> None:
    inputs = _corpus(tmp_path / "in", None, files=4, per_file=3)
    first = _annotate(tiny_bundle, inputs, tmp_path / "a", "--format", "bioc_xml", "--workers", "1")
    assert first.returncode == 0, first.stderr
    outputs = _outputs(tmp_path / "a")
    assert sorted(outputs) == ["notes/a.xml", "part00.xml", "part01.xml", "part02.xml", "part03.xml"]
    assert all(b'annotator">bioner' in data for data in outputs.values())
    assert _annotate(tiny_bundle, inputs, tmp_path / "b", "--format", "bioc_xml", "--workers", "2").returncode == 0
    assert _outputs(tmp_path / "b") == outputs  # byte-identical, whatever the process count
    (tmp_path / "a" / "part01.xml").unlink()
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "a").rglob("*.xml")}
    rerun = _annotate(tiny_bundle, inputs, tmp_path / "a", "--format", "bioc_xml")
    assert '"files": 1' in rerun.stdout and '"skipped": 4' in rerun.stdout  # only the missing file is redone
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items())
    assert _outputs(tmp_path / "a") == outputs
    other = _annotate(tiny_bundle, inputs, tmp_path / "a", "--format", "bioc_xml", "--offsets", "utf16")
    assert other.returncode == 2 and "offsets: codepoint -> utf16" in other.stderr  # no mixing of files made two ways
    regraded = shutil.copytree(tiny_bundle, tmp_path / "regraded")  # the same graph, other decoding defaults
    serving = json.loads((regraded / "serving.json").read_text())
    (regraded / "serving.json").write_text(json.dumps({**serving, "consistency": "first_mention"}))
    other = _annotate(regraded, inputs, tmp_path / "a", "--format", "bioc_xml")
    assert other.returncode == 2 and "serving_sha256" in other.stderr
    assert _outputs(tmp_path / "a") == outputs


def test_a_killed_run_leaves_no_partial_output_and_resumes(shared_data: Path, tmp_path: Path) -> None:
    inputs = _corpus(tmp_path / "in", shared_data, files=12, per_file=4)
    out = tmp_path / "out"
    command = _command(JNLPBA_BUNDLE, inputs, out)
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(out.glob("part0*.jsonl")):  # the first file is done
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = _outputs(out)
    assert 0 < len([n for n in done if not n.startswith(".")]) < 13, "the kill must land mid-run"
    for name, data in done.items():  # what is visible is complete; only hidden partials may remain
        assert name.split("/")[-1].startswith(".") or data.endswith(b"\n") and read_documents(data, Format.JSONL).documents
    resumed = _annotate(JNLPBA_BUNDLE, inputs, out)
    assert resumed.returncode == 0, resumed.stderr
    assert not [n for n in _outputs(out) if n.split("/")[-1].startswith(".")]  # the partials were cleared
    clean = _annotate(JNLPBA_BUNDLE, inputs, tmp_path / "clean")
    assert clean.returncode == 0
    assert _outputs(out) == _outputs(tmp_path / "clean")


def test_ray_run_equals_the_local_run(tiny_bundle: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray.data")
    import ray

    from service.bulk.annotator import Options
    from service.bulk.files import plan_jobs
    from service.bulk.local import run_local
    from service.bulk.on_ray import run_on_ray

    inputs = _corpus(tmp_path / "in", None, files=3, per_file=2)
    (inputs / "broken.pubtator").write_text("1|t|p53\nnot a pubtator line\n")
    options = Options(tiny_bundle, Format.BIOC_JSON, OffsetUnit.UTF16, threads=1)
    local = run_local(plan_jobs([str(inputs)], tmp_path / "local", options.output_format), options, progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        on_ray = run_on_ray(plan_jobs([str(inputs)], tmp_path / "ray", options.output_format), options, actors=2)
    finally:
        ray.shutdown()
    assert (
        (on_ray.files, on_ray.documents, on_ray.entities) == (local.files, local.documents, local.entities) == (4, 13, on_ray.entities)
    )  # 3 files x 2 blocks x 2 documents + one .txt
    assert on_ray.entities > 0
    assert len(on_ray.failed) == len(local.failed) == 1 and "broken.pubtator" in on_ray.failed[0]  # reported; the rest went on
    assert _outputs(tmp_path / "ray") == _outputs(tmp_path / "local")


TITLE_AND_ABSTRACT = (
    "1|t|The Epstein-Barr virus BZLF1 gene promoter (Zp) is induced by phorbol esters.\n"
    "1|a|Zp activation requires two AP-1 sites, and Zp is silent in resting B cells.\n\n"
)


def _zp_types(data: bytes, fmt: Format) -> list[str]:
    return [kind for _, _, _, kind, text in _ours(data, fmt) if text == "Zp"]


async def test_a_titles_names_carry_into_the_abstract_over_http_and_in_bulk(tmp_path: Path) -> None:
    """Title and abstract are two passages, decoded one by one; under the JNLPBA bundle's
    ``first_mention`` default the title's ``Zp`` (DNA, after "gene promoter") decides the
    abstract's two, which the abstract alone types as proteins."""
    from service.bulk.annotator import FileAnnotator, Options
    from service.bulk.files import Job

    async with app_client(Settings(model_path=JNLPBA_BUNDLE)) as (client, _):
        response = await client.post("/annotate", content=TITLE_AND_ABSTRACT.encode(), headers={"content-type": "text/plain"})
        alone = (await client.post("/ner", json={"text": TITLE_AND_ABSTRACT.split("|a|")[1].strip()})).json()["entities"]
        own_context = await client.post(
            "/annotate?consistency=none", content=TITLE_AND_ABSTRACT.encode(), headers={"content-type": "text/plain"}
        )
        refused = await client.post(
            "/annotate?consistency=majority", content=TITLE_AND_ABSTRACT.encode(), headers={"content-type": "text/plain"}
        )
    assert refused.status_code == 422 and "consistency" in refused.text
    assert _zp_types(own_context.content, Format.PUBTATOR) == ["DNA", "protein", "protein"]
    assert response.status_code == 200, response.text
    assert [e["label"] for e in alone if e["text"] == "Zp"] == ["protein", "protein"], "the abstract alone types Zp otherwise"
    assert _zp_types(response.content, Format.PUBTATOR) == ["DNA", "DNA", "DNA"]
    source = tmp_path / "in.txt"
    source.write_text(TITLE_AND_ABSTRACT, encoding="utf-8")
    FileAnnotator(Options(JNLPBA_BUNDLE, Format.PUBTATOR))(Job(source, tmp_path / "out.txt"))
    assert _zp_types((tmp_path / "out.txt").read_bytes(), Format.PUBTATOR) == ["DNA", "DNA", "DNA"]
