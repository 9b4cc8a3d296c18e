// The bioner entity viewer: plain JavaScript, no dependencies, no request outside this service.
// It calls the public API (GET /model or /models, POST /ner, POST /annotate when the service has it)
// with the key the person enters. Text from people and models enters the page only through
// textContent and text nodes, never as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const KEY_STORE = "bioner.apiKey";
  const ALTERNATIVES = 3; // asked of /ner when its schema offers them
  const PIECE_CHARS = 20000; // long texts go in pieces of at most this, so progress shows and no request runs long
  const REQUEST_WINDOWS = 512; // and at most this many windows per request
  const TABLE_ROWS = 2000; // the table shows this many; the downloads hold all
  const PALETTE = ["#f6c343", "#8ecdf7", "#a9dc96", "#f4a3a8", "#cdb4f6", "#ffbf80", "#97e0d9", "#e0da8a", "#f2b5dc", "#c4ccd4"];
  const DEFAULT_LIMITS = { max_text_chars: 100000, max_texts_per_request: 64, max_request_windows: 1064 };
  // /annotate's input formats, by file name, then by the first characters.
  const MEDIA = { bioc_xml: "application/xml", bioc_json: "application/json", jsonl: "application/x-ndjson", pubtator: "text/plain" };

  const state = {
    key: sessionStorage.getItem(KEY_STORE) || "",
    spec: { paths: {} }, // the OpenAPI document: which routes and request fields this service has
    models: [],
    model: null,
    limits: DEFAULT_LIMITS, // the service's (GET /model), the same for every model
    colours: new Map(),
    docs: [], // [{id, passages: [{text, type, entities: [{u0, u1, start, end, text, label, score, alternatives}]}]}]
    abort: null,
  };
  const entityOf = new WeakMap(); // <mark> -> its entity, for the tooltip

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    Object.assign(node, props);
    node.append(...children); // strings become text nodes
    return node;
  }

  function setStatus(message, error = false) {
    $("status").textContent = message;
    $("status").classList.toggle("error", error);
  }

  // ------------------------------------------------------------------ the API
  class ApiError extends Error {
    constructor(status, code, message, retryAfter) {
      super(message);
      Object.assign(this, { status, code, retryAfter });
    }
  }

  async function call(path, init = {}) {
    const headers = new Headers(init.headers || {});
    if (state.key) headers.set("X-API-Key", state.key);
    const response = await fetch(path, { ...init, headers, signal: state.abort && state.abort.signal });
    if (response.ok) return response;
    let code = `http_${response.status}`;
    let message = response.statusText;
    try {
      const body = await response.json();
      code = (body.error && body.error.code) || code;
      message = (body.error && body.error.message) || message;
    } catch {
      // not our JSON error shape: keep the status line
    }
    throw new ApiError(response.status, code, message, Number(response.headers.get("retry-after")) || 1);
  }

  const sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

  // 503 (overloaded, draining) carries Retry-After: wait and try again, a few times.
  async function withRetry(send) {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await send();
      } catch (err) {
        if (!(err instanceof ApiError) || err.status !== 503 || attempt >= 4) throw err;
        setStatus(`The service is busy (${err.code}); trying again in ${err.retryAfter} s…`);
        await sleep(Math.min(err.retryAfter, 30));
        if (state.abort && state.abort.signal.aborted) throw new DOMException("stopped", "AbortError");
      }
    }
  }

  function report(err) {
    if (err.name === "AbortError") return setStatus("Stopped.");
    if (err instanceof ApiError && err.status === 401) {
      $("key-box").hidden = false;
      $("key").focus();
      return setStatus("This service needs an API key: enter it below.", true);
    }
    if (err instanceof ApiError) return setStatus(`${err.status} ${err.code}: ${err.message}`, true);
    return setStatus(`The request failed: ${err.message}`, true);
  }

  // ------------------------------------------------------------------ models and heads
  // GET /model: the default model and the service's limits; GET /models, where the service has
  // it, lists every model (with its heads) for the selector.
  async function loadModels() {
    try {
      const info = await (await call("model")).json();
      state.limits = { ...DEFAULT_LIMITS, ...(info.limits || {}) };
      const listed = state.spec.paths["/models"] ? await (await call("models")).json() : [info];
      state.models = (Array.isArray(listed) ? listed : listed.models || []).map((m) => (m.name === info.name ? { ...info, ...m } : m));
      const select = $("model");
      select.replaceChildren(...state.models.map((m, i) => el("option", { value: String(i), textContent: `${m.name} ${m.version || ""}` })));
      select.disabled = state.models.length < 2;
      const chosen = Math.max(0, state.models.findIndex((m) => m.name === info.name));
      select.value = String(chosen);
      chooseModel(chosen);
      if (!$("status").classList.contains("busy")) setStatus("");
    } catch (err) {
      report(err);
    }
  }

  function chooseModel(index) {
    const model = state.models[index];
    if (!model) return;
    state.model = model;
    state.colours = new Map();
    const heads = (model.heads || []).map((h) => (typeof h === "string" ? { name: h, labels: [] } : h));
    const labels = [...new Set([...(model.labels || []), ...heads.flatMap((h) => h.labels || [])])];
    labels.forEach((label) => colour(label));
    const options = heads.map((h) => el("option", { value: h.name, textContent: h.name }));
    $("head").replaceChildren(el("option", { value: "", textContent: "all heads" }), ...options);
    $("head-field").hidden = heads.length < 2;
    const piece = Math.min(state.limits.max_text_chars, PIECE_CHARS).toLocaleString("en");
    $("model-line").textContent =
      `${model.name} ${model.version || ""} · ${labels.length} entity types · long texts go in pieces of up to ${piece} characters`;
  }

  function colour(label) {
    if (!state.colours.has(label)) state.colours.set(label, PALETTE[state.colours.size % PALETTE.length]);
    return state.colours.get(label);
  }

  // The request fields this service's /ner schema has: nothing is sent that it does not know.
  function nerOptions() {
    const schemas = (state.spec.components && state.spec.components.schemas) || {};
    const fields = (schemas.NerRequest && schemas.NerRequest.properties) || {};
    const options = {};
    const minScore = Number($("min-score").value);
    if (minScore > 0) options.min_score = Math.min(minScore, 1);
    if (fields.alternatives) options.alternatives = Math.min(ALTERNATIVES, fields.alternatives.maximum || ALTERNATIVES);
    if (fields.model && state.models.length > 1) options.model = state.model.name;
    const head = $("head-field").hidden ? "" : $("head").value;
    if (head && fields.heads) options.heads = [head];
    return options;
  }

  // ------------------------------------------------------------------ offsets
  // The API counts code points (Python str indices); JavaScript strings count UTF-16 units.
  function offsetMaps(text) {
    if (!/[\uD800-\uDFFF]/.test(text)) return { units: (cp) => cp, points: (u) => u };
    const units = [];
    const points = new Int32Array(text.length + 1);
    for (let u = 0, cp = 0; u <= text.length; cp += 1) {
      units.push(u);
      points[u] = cp;
      if (u === text.length) break;
      const width = text.codePointAt(u) > 0xffff ? 2 : 1;
      if (width === 2) points[u + 1] = cp;
      u += width;
    }
    return { units: (cp) => units[cp], points: (u) => points[u] };
  }

  // Pieces of at most `max` UTF-16 units (so at most `max` code points, the server's measure), cut
  // after the last paragraph break, else line break, else sentence end, else space in the piece's
  // second half; a hard cut never splits a surrogate pair. `start` shifts offsets back.
  function split(text, max) {
    const pieces = [];
    let start = 0;
    while (text.length - start > max) {
      const window = text.slice(start, start + max);
      let cut = -1;
      for (const pattern of [/\n\s*\n/g, /\n/g, /[.!?]["')\]]?\s+/g, /\s+/g]) {
        for (const m of window.matchAll(pattern)) if (m.index + m[0].length >= max / 2) cut = m.index + m[0].length;
        if (cut > 0) break;
      }
      if (cut <= 0) cut = /[\uD800-\uDBFF]/.test(window[max - 1]) ? max - 1 : max;
      pieces.push({ start, text: text.slice(start, start + cut) });
      start += cut;
    }
    pieces.push({ start, text: text.slice(start) });
    return pieces;
  }

  // The server's own bound on the windows a text may need (a subword covers at least one character).
  function windowsBound(chars, model) {
    const content = (model.max_length || 128) - 2;
    if (chars <= content) return chars > 0 ? 1 : 0;
    return Math.ceil((chars - content) / (content - (model.stride || 0))) + 1;
  }

  function requests(pieces, model) {
    const limits = state.limits;
    const budget = Math.min(limits.max_request_windows, REQUEST_WINDOWS);
    const out = [];
    let current = [];
    let windows = 0;
    for (const piece of pieces) {
      const need = windowsBound(piece.text.length, model);
      if (current.length && (current.length >= limits.max_texts_per_request || windows + need > budget)) {
        out.push(current);
        current = [];
        windows = 0;
      }
      current.push(piece);
      windows += need;
    }
    if (current.length) out.push(current);
    return out;
  }

  function passage(text, entities, type) {
    const maps = offsetMaps(text);
    const kept = entities.filter((e) => e.u0 >= 0 && e.u0 < e.u1 && e.u1 <= text.length).sort((a, b) => a.u0 - b.u0);
    for (const e of kept) Object.assign(e, { start: maps.points(e.u0), end: maps.points(e.u1) });
    return { text, type, entities: kept };
  }

  // ------------------------------------------------------------------ running
  async function recognizeText(text) {
    const batches = requests(split(text, Math.min(state.limits.max_text_chars, PIECE_CHARS)), state.model);
    const entities = [];
    for (let i = 0; i < batches.length; i += 1) {
      const batch = batches[i];
      if (batches.length > 1) setStatus(`Request ${i + 1} of ${batches.length}…`);
      const body = JSON.stringify({ texts: batch.map((p) => p.text), ...nerOptions() });
      let answer;
      try {
        const init = { method: "POST", headers: { "Content-Type": "application/json" }, body };
        answer = await withRetry(async () => (await call("ner", init)).json());
      } catch (err) {
        // The server's window budget was tighter than this estimate: send the halves instead.
        if (!(err instanceof ApiError && err.code === "request_too_large" && batch.length > 1)) throw err;
        batches.splice(i, 1, batch.slice(0, batch.length >> 1), batch.slice(batch.length >> 1));
        i -= 1;
        continue;
      }
      batch.forEach((piece, j) => {
        const maps = offsetMaps(piece.text);
        for (const e of answer.entities[j]) {
          const u0 = piece.start + maps.units(e.start);
          const u1 = piece.start + maps.units(e.end);
          entities.push({ u0, u1, text: e.text, label: e.label, score: e.score, alternatives: e.alternatives || [], source: e.source });
        }
      });
    }
    return [{ id: "text", passages: [passage(text, entities)] }];
  }

  function documentFormat(name, head) {
    if (/\.txt$/i.test(name)) return null;
    if (/\.xml$/i.test(name)) return "bioc_xml";
    if (/\.jsonl$/i.test(name)) return "jsonl";
    if (/\.json$/i.test(name)) return "bioc_json";
    if (/\.pubtator\d*$/i.test(name) || /^[^|\n]*\|[ta]\|/.test(head)) return "pubtator";
    if (/^\s*</.test(head)) return "bioc_xml";
    if (/^\s*\{/.test(head)) return /^\s*\{.*\}\s*\n\s*\{/.test(head) ? "jsonl" : "bioc_json";
    return null; // plain text
  }

  // A document file goes to /annotate, which answers BioC JSON with UTF-16 offsets (JavaScript's own).
  async function recognizeDocuments(file, format) {
    const query = new URLSearchParams({ format, output: "bioc_json", offsets: "utf16", keep_existing: "false" });
    const minScore = Number($("min-score").value);
    if (minScore > 0) query.set("min_score", String(Math.min(minScore, 1)));
    const operation = state.spec.paths["/annotate"].post || {};
    const params = new Set((operation.parameters || []).map((p) => p.name)); // only what /annotate takes
    if (params.has("model") && state.models.length > 1) query.set("model", state.model.name);
    if (params.has("alternatives")) query.set("alternatives", String(ALTERNATIVES));
    const init = { method: "POST", headers: { "Content-Type": MEDIA[format] }, body: file };
    const collection = await withRetry(async () => (await call(`annotate?${query}`, init)).json());
    return (collection.documents || []).map((doc) => ({
      id: String(doc.id ?? ""),
      passages: (doc.passages || [])
        .filter((p) => typeof p.text === "string")
        .map((p) => {
          const entities = (p.annotations || [])
            .filter((a) => a.locations && a.locations.length)
            .map((a) => {
              const u0 = a.locations[0].offset - p.offset;
              const u1 = u0 + a.locations[0].length;
              const infons = a.infons || {};
              const alternatives = (infons.alternatives || "") // "label:score;label:score"
                .split(";")
                .filter(Boolean)
                .map((pair) => ({ label: pair.slice(0, pair.lastIndexOf(":")), score: Number(pair.slice(pair.lastIndexOf(":") + 1)) }));
              const label = infons.type || "entity";
              return { u0, u1, text: p.text.slice(u0, u1), label, score: Number(infons.score), alternatives, source: infons.source };
            });
          return passage(p.text, entities, p.infons && p.infons.type);
        }),
    }));
  }

  async function run(source) {
    if (!state.model) await loadModels();
    if (!state.model) return;
    state.abort = new AbortController();
    busy(true);
    const started = performance.now();
    try {
      state.docs = source.file ? await recognizeDocuments(source.file, source.format) : await recognizeText(source.text);
      render();
      const found = state.docs.reduce((n, d) => n + d.passages.reduce((m, p) => m + p.entities.length, 0), 0);
      setStatus(`${found.toLocaleString("en")} entities in ${((performance.now() - started) / 1000).toFixed(1)} s.`);
    } catch (err) {
      report(err);
    } finally {
      state.abort = null;
      busy(false);
    }
  }

  function busy(on) {
    $("run").disabled = on;
    $("stop").hidden = !on;
    $("status").classList.toggle("busy", on);
    if (on) setStatus("Working…");
  }

  // ------------------------------------------------------------------ showing
  function render() {
    const counts = new Map();
    const blocks = state.docs.map((doc) => {
      const block = el("article", { className: "document" });
      if (doc.id !== "text") block.append(el("h2", { textContent: doc.id }));
      for (const p of doc.passages) block.append(renderPassage(p, counts));
      return block;
    });
    $("doc").replaceChildren(...blocks);
    renderLegend(counts);
    renderTable();
    $("result").hidden = false;
  }

  function renderPassage(p, counts) {
    const node = el("p", { className: "passage" });
    let at = 0;
    for (const e of p.entities) {
      if (e.u0 < at) continue; // overlapping spans (the API gives none): keep the first
      const mark = el("mark", { className: "entity", textContent: p.text.slice(e.u0, e.u1) });
      mark.dataset.label = e.label;
      mark.style.setProperty("--colour", colour(e.label));
      entityOf.set(mark, e);
      node.append(p.text.slice(at, e.u0), mark);
      at = e.u1;
      counts.set(e.label, (counts.get(e.label) || 0) + 1);
    }
    node.append(p.text.slice(at));
    return node;
  }

  function renderLegend(counts) {
    const labels = [...state.colours.keys()].filter((label) => counts.has(label));
    const items = labels.map((label) => {
      const item = el(
        "button",
        { type: "button", className: "legend-item", title: "show or hide this type" },
        el("span", { className: "swatch" }),
        el("span", { className: "legend-label", textContent: label }),
        el("span", { className: "count", textContent: counts.get(label).toLocaleString("en") }),
      );
      item.dataset.label = label;
      item.setAttribute("aria-pressed", "true");
      item.querySelector(".swatch").style.background = colour(label);
      return item;
    });
    $("legend").replaceChildren(...(items.length ? items : [el("span", { className: "muted", textContent: "No entities found." })]));
  }

  function toggleType(item) {
    const shown = item.getAttribute("aria-pressed") !== "true";
    item.setAttribute("aria-pressed", String(shown));
    for (const mark of $("doc").querySelectorAll(`mark[data-label="${CSS.escape(item.dataset.label)}"]`)) {
      mark.classList.toggle("off", !shown);
    }
  }

  const percent = (score) => (Number.isFinite(score) ? score.toFixed(3) : "–");

  function showTip(mark) {
    const e = entityOf.get(mark);
    if (!e) return;
    const tip = $("tip");
    const lines = [
      el("div", { className: "tip-head" }, el("strong", { textContent: e.label }), ` ${percent(e.score)}`),
      ...e.alternatives.map((a) => el("div", { className: "tip-alt", textContent: `${a.label} ${percent(a.score)}` })),
      ...(e.source && !$("head-field").hidden ? [el("div", { className: "tip-where", textContent: `head ${e.source}` })] : []),
      el("div", { className: "tip-where", textContent: `characters ${e.start}–${e.end}` }),
    ];
    tip.replaceChildren(...lines);
    tip.hidden = false;
    const box = mark.getBoundingClientRect(); // below the entity, or above it near the bottom of the window
    const top = box.bottom + tip.offsetHeight + 6 <= window.innerHeight ? box.bottom + 6 : box.top - tip.offsetHeight - 6;
    tip.style.left = `${Math.max(4, Math.min(box.left, window.innerWidth - tip.offsetWidth - 8)) + window.scrollX}px`;
    tip.style.top = `${top + window.scrollY}px`;
  }

  // ------------------------------------------------------------------ table and downloads
  function rows() {
    const out = [];
    for (const doc of state.docs) {
      doc.passages.forEach((p, index) => {
        for (const e of p.entities) {
          const row = { document: doc.id, passage: index, start: e.start, end: e.end, text: e.text, label: e.label, score: e.score };
          out.push(e.source === undefined ? { ...row, alternatives: e.alternatives } : { ...row, alternatives: e.alternatives, source: e.source });
        }
      });
    }
    return out;
  }

  const alternativesText = (alternatives) => alternatives.map((a) => `${a.label}:${a.score}`).join(" ");

  function renderTable() {
    const all = rows();
    const shown = all.slice(0, TABLE_ROWS).map((r) => {
      const cells = [`${r.document}${r.passage ? ` #${r.passage}` : ""}`, r.start, r.end, r.text, r.label, percent(r.score), alternativesText(r.alternatives)];
      return el("tr", {}, ...cells.map((c) => el("td", { textContent: String(c) })));
    });
    $("table").tBodies[0].replaceChildren(...shown);
    $("table-note").textContent =
      all.length > TABLE_ROWS ? `The first ${TABLE_ROWS.toLocaleString("en")} of ${all.length.toLocaleString("en")} entities; the downloads hold all.` : "";
  }

  function download(name, type, content) {
    const url = URL.createObjectURL(new Blob([content], { type }));
    const link = el("a", { href: url, download: name });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  function downloadJson() {
    const m = state.model || {};
    const offsets = "start/end: code-point (Python str) offsets into the passage text";
    const body = { model: { name: m.name, version: m.version, sha256: m.sha256 }, offsets, entities: rows() };
    download("entities.json", "application/json", `${JSON.stringify(body, null, 2)}\n`);
  }

  function downloadTsv() {
    const clean = (value) => String(value).replace(/[\t\r\n]/g, " ");
    const lines = [["document", "passage", "start", "end", "label", "score", "text", "alternatives"].join("\t")];
    for (const r of rows()) lines.push([r.document, r.passage, r.start, r.end, r.label, r.score, r.text, alternativesText(r.alternatives)].map(clean).join("\t"));
    download("entities.tsv", "text/tab-separated-values", `${lines.join("\n")}\n`);
  }

  function showView(table) {
    $("doc").hidden = table;
    $("table-view").hidden = !table;
    $("show-text").setAttribute("aria-pressed", String(!table));
    $("show-table").setAttribute("aria-pressed", String(table));
  }

  // ------------------------------------------------------------------ wiring
  async function loadFile(file) {
    const head = await file.slice(0, 4096).text();
    const format = documentFormat(file.name, head);
    if (format === null) {
      const text = await file.text();
      $("text").value = text;
      return run({ text });
    }
    if (!state.spec.paths["/annotate"]) return setStatus("This service reads plain text only: it has no /annotate route for document files.", true);
    $("text").value = "";
    return run({ file, format });
  }

  function useKey(event) {
    event.preventDefault();
    state.key = $("key").value.trim();
    if (state.key && $("remember").checked) sessionStorage.setItem(KEY_STORE, state.key);
    else sessionStorage.removeItem(KEY_STORE);
    setStatus("");
    loadModels();
  }

  function wire() {
    $("input").addEventListener("submit", (event) => {
      event.preventDefault();
      const text = $("text").value;
      if (!text.trim()) return setStatus("Paste some text first, or load a file.", true);
      return run({ text });
    });
    $("stop").addEventListener("click", () => state.abort && state.abort.abort());
    $("file").addEventListener("change", () => $("file").files[0] && loadFile($("file").files[0]));
    $("model").addEventListener("change", () => chooseModel(Number($("model").value)));
    $("key-box").addEventListener("submit", useKey);
    $("key-forget").addEventListener("click", () => {
      state.key = "";
      $("key").value = "";
      sessionStorage.removeItem(KEY_STORE);
    });
    $("legend").addEventListener("click", (event) => {
      const item = event.target.closest(".legend-item");
      if (item) toggleType(item);
    });
    $("doc").addEventListener("mouseover", (event) => {
      const mark = event.target.closest("mark.entity");
      if (mark) showTip(mark);
    });
    $("doc").addEventListener("mouseout", (event) => {
      if (event.target.closest("mark.entity")) $("tip").hidden = true;
    });
    $("doc").addEventListener("scroll", () => ($("tip").hidden = true));
    $("show-text").addEventListener("click", () => showView(false));
    $("show-table").addEventListener("click", () => showView(true));
    $("download-json").addEventListener("click", downloadJson);
    $("download-tsv").addEventListener("click", downloadTsv);
  }

  async function start() {
    wire();
    if (state.key) {
      $("key").value = state.key;
      $("remember").checked = true;
      $("key-box").hidden = false;
    }
    try {
      state.spec = await (await fetch("openapi.json")).json();
      state.spec.paths = state.spec.paths || {};
    } catch {
      // an older or locked-down service: fall back to GET /model and plain text
    }
    if (state.spec.paths["/annotate"]) $("file").accept = ".txt,.xml,.json,.jsonl,.pubtator,text/plain,application/xml,application/json";
    await loadModels();
  }

  start();
})();
