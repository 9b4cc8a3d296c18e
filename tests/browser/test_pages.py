"""The viewer and the API docs in headless Chromium, against a real server with the default model.

Every test runs with each request outside the service aborted and recorded (``open_page``): the
pages must render from what the service ships. Skips without chromium or playwright.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_support import API_KEY, ROOT, save_screenshot

expect = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install -e '.[browser]')").expect
expect.set_options(timeout=60_000)  # a long text on a busy 2-core machine

# The DOM walk the highlight checks rely on: each passage's text, and for every <mark> the UTF-16
# offsets of its text within the passage (the label is drawn by CSS, so it is not in the text).
MARKS_JS = """() => [...document.querySelectorAll('#doc .passage')].map((p) => {
  let at = 0; const marks = [];
  for (const node of p.childNodes) {
    const length = node.textContent.length;
    if (node.nodeName === 'MARK') marks.push({start: at, end: at + length, text: node.textContent, label: node.dataset.label});
    at += length;
  }
  return {text: p.textContent, marks};
})"""


def readme_example() -> tuple[str, list[dict[str, Any]]]:
    """The README's request sentence for the JNLPBA model and its answer shown under it."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    readme = readme[readme.index("### JNLPBA's five types at their best") :]
    body = re.search(r"curl -s http://127\.0\.0\.1:8000/ner .*?-d '(\{.*?\})'", readme, re.S)
    answer = re.search(r"```json\n(.*?)```", readme, re.S)
    assert body and answer, "README example not found"
    return json.loads(body.group(1))["text"], json.loads(answer.group(1))["entities"]


def find_entities(page: Any, text: str) -> None:
    page.fill("#text", text)
    page.click("#run")
    expect(page.locator("#status")).to_contain_text("entities in")


def test_docs_render_every_operation_offline(open_page: Any, server: str) -> None:
    schema = httpx.get(f"{server}/openapi.json").json()
    operations = sum(len(methods) for methods in schema["paths"].values())
    page, _ = open_page(server, "/docs")
    page.wait_for_selector(".opblock .opblock-summary-path")
    shown = {page.locator(".opblock-summary-path").nth(i).inner_text() for i in range(page.locator(".opblock").count())}
    assert shown == set(schema["paths"]) and page.locator(".opblock").count() == operations
    save_screenshot(page, "docs.png")

    page.goto(f"{server}/redoc")
    page.wait_for_selector("[data-section-id^='operation/']")
    assert page.locator("[data-section-id^='operation/']").count() == operations


def test_viewer_highlights_the_readme_example(open_page: Any, server: str) -> None:
    text, expected = readme_example()
    page, _ = open_page(server)
    expect(page.locator("#model-line")).to_contain_text("bioner-minilm-jnlpba")
    assert page.locator("#model").is_disabled() and page.locator("#head-field").is_hidden()  # one model, one head
    find_entities(page, text)

    (passage,) = page.evaluate(MARKS_JS)
    assert passage["text"] == text
    assert passage["marks"] == [{k: e[k] for k in ("start", "end", "text", "label")} for e in expected]
    legend = page.locator(".legend-item").all_inner_texts()
    assert sorted(" ".join(item.split()) for item in legend) == ["DNA 1", "cell_type 1", "protein 3"]

    page.hover("mark.entity >> nth=0")  # IL-2 gene: DNA, and protein among the alternatives
    tip = page.locator("#tip").inner_text()
    assert tip.startswith(f"DNA {expected[0]['score']:.3f}") and "protein" in tip and "characters 0–9" in tip
    page.hover("mark.entity >> nth=-1")  # for the screenshot: the last entity, nothing under its tooltip
    bottom = max(box["y"] + box["height"] for box in (page.locator("#result").bounding_box(), page.locator("#tip").bounding_box()))
    path = save_screenshot(page, "viewer.png", clip={"x": 0, "y": 0, "width": 1280, "height": bottom + 16})
    assert path.stat().st_size > 10_000

    page.click("#show-table")
    assert page.locator("#table tbody tr").count() == len(expected)
    with page.expect_download() as download:
        page.click("#download-tsv")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text()), delimiter="\t"))
    assert [(int(r["start"]), int(r["end"]), r["label"], r["text"]) for r in rows] == [
        (e["start"], e["end"], e["label"], e["text"]) for e in expected
    ]
    with page.expect_download() as download:
        page.click("#download-json")
    entities = json.loads(Path(download.value.path()).read_text())["entities"]
    assert [round(e["score"], 4) for e in entities] == [e["score"] for e in expected]
    assert all(len(e["alternatives"]) == 3 for e in entities)


def test_markup_in_the_text_is_shown_as_text(open_page: Any, server: str) -> None:
    text = (
        '<script>window.__pwned = 1</script>IL-2 gene expression <img src="x" onerror="window.__pwned = 2"> requires '
        "<b>NF-kappa B</b> in <script>human T cells</script> & <iframe src=x></iframe> &lt;p&gt;"
    )
    page, watch = open_page(server)
    find_entities(page, text)
    (passage,) = page.evaluate(MARKS_JS)
    assert passage["text"] == text
    assert all(text[m["start"] : m["end"]] == m["text"] for m in passage["marks"])
    inside = [m for m in passage["marks"] if text[: m["start"]].endswith("<script>")]
    assert [m["text"] for m in inside] == ["human T cells"], passage["marks"]  # an entity inside script-looking text
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#doc script, #doc img, #doc iframe, #doc b").count() == 0
    assert not [r.url for r in watch.requests if r.url.endswith("/x")]


def test_long_text_is_sent_in_pieces_with_offsets_shifted_back(open_page: Any, server: str) -> None:
    sentence, _ = readme_example()
    # Over the server's max_text_chars (20,000 in live_server), with astral characters before the
    # entities: the viewer counts UTF-16 units, the API code points.
    paragraphs = [" ".join(f"🧬 {sentence}" for _ in range(8)) for _ in range(40)]
    text = "\n\n".join(paragraphs)
    assert len(text) > 40_000
    page, watch = open_page(server)
    find_entities(page, text)
    ner_calls = [r for r in watch.requests if r.url.endswith("/ner")]
    assert len(ner_calls) >= 3

    (passage,) = page.evaluate(MARKS_JS)
    assert passage["text"] == text
    assert len(passage["marks"]) >= 40 * 8 * 4
    assert all(text.encode("utf-16-le")[2 * m["start"] : 2 * m["end"]].decode("utf-16-le") == m["text"] for m in passage["marks"])
    assert passage["marks"][-1]["end"] > len(text.encode("utf-16-le")) // 2 - len(sentence)  # the last piece counted too
    with page.expect_download() as download:
        page.click("#download-json")
    entities = json.loads(Path(download.value.path()).read_text())["entities"]
    assert len(entities) == len(passage["marks"])
    assert all(text[e["start"] : e["end"]] == e["text"] for e in entities)  # code-point offsets, as the API gives


def test_document_files_go_through_annotate(open_page: Any, server: str) -> None:
    if "/annotate" not in httpx.get(f"{server}/openapi.json").json()["paths"]:
        pytest.skip("this service has no /annotate")
    pubtator = "1|t|IL-2 gene expression requires NF-kappa B.\n1|a|CD28 signals in human T cells.\n\n"
    page, _ = open_page(server)
    expect(page.locator("#model-line")).to_contain_text("bioner")
    page.set_input_files("#file", files=[{"name": "abstracts.pubtator", "mimeType": "text/plain", "buffer": pubtator.encode()}])
    expect(page.locator("#status")).to_contain_text("entities in")
    passages = page.evaluate(MARKS_JS)
    assert [p["text"] for p in passages] == ["IL-2 gene expression requires NF-kappa B.", "CD28 signals in human T cells."]
    assert all(p["marks"] for p in passages)
    assert all(p["text"][m["start"] : m["end"]] == m["text"] for p in passages for m in p["marks"])


def test_model_and_head_selectors_follow_the_api(open_page: Any, server: str) -> None:
    """Several models and heads, as GET /models and the /ner schema would describe them (answered
    by the page's own routes here): the choice is sent as the fields the schema names."""
    spec = httpx.get(f"{server}/openapi.json").json()
    spec["paths"].setdefault("/models", {"get": {"responses": {}}})
    fields = spec["components"]["schemas"]["NerRequest"]["properties"]
    fields.setdefault("model", {"type": "string"})
    fields.setdefault("heads", {"type": "array", "items": {"type": "string"}})
    default = {**httpx.get(f"{server}/model").json(), "default": True}
    heads = [{"name": "bc5cdr", "labels": ["Chemical", "Disease"]}, {"name": "s800", "labels": ["Species"]}]
    multi = {"name": "multi-head", "version": "2.0.0", "sha256": "0" * 64, "labels": ["Chemical", "Disease", "Species"], "heads": heads}
    multi.update({"max_length": 128, "stride": 32, "default": False})
    sent: list[dict[str, Any]] = []
    lithium = {"start": 0, "end": 7, "text": "Lithium", "label": "Chemical", "score": 0.91, "alternatives": [], "source": "bc5cdr"}

    def answer(route: Any) -> None:
        path = route.request.url.rsplit("/", 1)[-1]
        if path == "openapi.json":
            route.fulfill(json=spec)
        elif path == "models":
            route.fulfill(json=[default, multi])
        elif path == "ner":
            sent.append(json.loads(route.request.post_data))
            route.fulfill(json={"entities": [[lithium]], "model": {k: multi[k] for k in ("name", "version", "sha256")}})
        else:
            route.fallback()

    page, _ = open_page(server)
    page.route("**/*", answer)
    page.reload()
    expect(page.locator("#model option")).to_have_count(2)
    assert page.locator("#head-field").is_hidden()  # the default model has one head
    page.select_option("#model", label="multi-head 2.0.0")
    expect(page.locator("#model-line")).to_contain_text("multi-head 2.0.0 · 3 entity types")
    page.select_option("#head", "bc5cdr")
    find_entities(page, "Lithium induced nephrogenic diabetes insipidus.")
    assert sent[-1]["model"] == "multi-head" and sent[-1]["heads"] == ["bc5cdr"] and sent[-1]["alternatives"] == 3
    page.hover("mark.entity")
    assert "Chemical 0.910" in page.locator("#tip").inner_text() and "head bc5cdr" in page.locator("#tip").inner_text()


def test_viewer_works_after_entering_a_key(open_page: Any, keyed_server: str) -> None:
    text, expected = readme_example()
    page, watch = open_page(keyed_server)
    expect(page.locator("#status")).to_contain_text("needs an API key")
    assert page.locator("#key-box").is_visible()

    page.fill("#key", "wrong-key")
    with page.expect_response(lambda r: r.url.endswith("/model")) as refused:
        page.click("#key-use")
    assert refused.value.status == 401
    expect(page.locator("#status")).to_contain_text("needs an API key")
    page.fill("#key", API_KEY)
    page.check("#remember")
    page.click("#key-use")
    expect(page.locator("#model-line")).to_contain_text("bioner-minilm-jnlpba")
    find_entities(page, text)
    (passage,) = page.evaluate(MARKS_JS)
    assert [(m["start"], m["end"], m["label"]) for m in passage["marks"]] == [(e["start"], e["end"], e["label"]) for e in expected]
    assert [r.headers.get("x-api-key") for r in watch.requests if r.url.endswith("/ner")] == [API_KEY]
    assert page.evaluate("sessionStorage.getItem('bioner.apiKey')") == API_KEY
    assert page.evaluate("localStorage.length") == 0

    page.reload()  # the key stays for the tab, and only there
    expect(page.locator("#model-line")).to_contain_text("bioner-minilm-jnlpba")
    find_entities(page, text)
    assert page.locator("mark.entity").count() == len(expected)


def test_docs_authorize_with_a_key(open_page: Any, keyed_server: str) -> None:
    page, watch = open_page(keyed_server, "/docs")
    page.wait_for_selector(".opblock")
    page.click("button.authorize")
    scheme = page.locator(".auth-container").filter(has=page.locator("#api_key_value"))  # the X-API-Key scheme
    scheme.locator("#api_key_value").fill(API_KEY)
    scheme.locator("button.authorize").click()
    expect(page.locator(".modal-ux h6", has_text="Authorized")).to_have_count(1)  # one scheme is enough
    page.locator(".modal-ux button.btn-done").first.click()

    operation = page.locator("#operations-default-model_model_get")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    expect(operation.locator(".live-responses-table tbody .response-col_status")).to_have_text("200")
    assert [r.headers.get("x-api-key") for r in watch.requests if r.url.endswith("/model")] == [API_KEY]
