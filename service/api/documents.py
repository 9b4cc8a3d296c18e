"""``POST /annotate``: a BioC XML/JSON collection, PubTator or JSON Lines document file in, the
same documents out with the model's entities added as annotations.

The format comes from ``Content-Type`` (or ``?format=``); the answer is in the same format unless
``?output=`` asks for another. Passages go through the engine exactly like ``/ner`` texts.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import Query, Request
from starlette.responses import Response

from service.api.routes import engine_for, recognize_many
from service.decoding.aggregate import Decoding, Strategy
from service.decoding.consistency import Consistency, first_mention_documents
from service.decoding.pipeline import Overlap
from service.documents.annotate import add_entities
from service.documents.formats import MEDIA_TYPE, WRITABLE, Format, read_documents, write_documents
from service.documents.offsets import OffsetUnit
from service.errors import InvalidRequestError

_BY_MEDIA_TYPE = {
    "application/xml": Format.BIOC_XML,
    "text/xml": Format.BIOC_XML,
    "application/json": Format.BIOC_JSON,
    "text/plain": Format.PUBTATOR,
    "text/x-pubtator": Format.PUBTATOR,
    "application/x-ndjson": Format.JSONL,
    "application/jsonl": Format.JSONL,
}
_WRITABLE = [f.value for f in WRITABLE]


def _input_format(request: Request, explicit: str | None) -> Format:
    if explicit:
        if explicit not in _WRITABLE:
            raise InvalidRequestError(f"format must be one of {_WRITABLE}, got {explicit!r}")
        return Format(explicit)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in _BY_MEDIA_TYPE:
        raise InvalidRequestError(f"unsupported Content-Type {media!r}: send one of {sorted(_BY_MEDIA_TYPE)} or set ?format=")
    return _BY_MEDIA_TYPE[media]


async def annotate(
    request: Request,
    format: Annotated[str | None, Query(description=f"Input format, one of {_WRITABLE}; default: from Content-Type.")] = None,
    output: Annotated[str | None, Query(description="Output format; default: the input's.")] = None,
    offsets: Annotated[OffsetUnit, Query(description="Offset unit of input and output: code points, UTF-16 code units or UTF-8 bytes.")] = (
        OffsetUnit.CODEPOINT
    ),
    keep_existing: Annotated[bool, Query(description="Keep the input's annotations (and relations).")] = True,
    min_score: Annotated[float, Query(ge=0.0, le=1.0, description="Drop entities scoring below this.")] = 0.0,
    labels: Annotated[list[str] | None, Query(description="Keep only these entity types.")] = None,
    heads: Annotated[list[str] | None, Query(description="Multi-head models: annotate with these heads only.")] = None,
    overlap: Annotated[Overlap, Query(description="Overlapping spans of different heads: keep_all, longest, highest_score.")] = (
        Overlap.KEEP_ALL
    ),
    model: Annotated[
        str | None, Query(max_length=64, description="Which loaded model annotates (GET /models); default: the default model.")
    ] = None,
    consistency: Annotated[
        Consistency | None,
        Query(
            description="first_mention: every later mention of a name in a document (title, abstract, sections) takes the type "
            "of its first mention; none: each by its own context. Default: the model's (GET /model)."
        ),
    ] = None,
    aggregation_strategy: Annotated[
        Strategy | None, Query(description="Subword-to-word aggregation, as /ner's; default: the model's.")
    ] = None,
    decoding: Annotated[
        Decoding | None, Query(description="How word labels are chosen, as /ner's; default: the model's (GET /model).")
    ] = None,
) -> Response:
    """Your documents back with entities added: each a BioC annotation whose infons carry the type,
    the score and the model (name, version, sha256). Offsets slice the passage text exactly."""
    engine = engine_for(request, model)
    # What this model cannot do is refused before the body is read.
    chosen = engine.options(aggregation_strategy, decoding, min_score, labels, 0, heads, overlap, consistency)
    source = _input_format(request, format)
    target = Format(output) if output in _WRITABLE else source
    if output is not None and output not in _WRITABLE:
        raise InvalidRequestError(f"output must be one of {_WRITABLE}, got {output!r}")
    body = await request.body()
    collection = await asyncio.to_thread(read_documents, body, source, offsets, "request body")
    texts = [p.text for p in collection.passages()]
    engine.check_many(texts, "passage")
    found = await recognize_many(request, engine, texts, chosen)
    if chosen.consistency is Consistency.FIRST_MENTION:  # a title's names carry into the abstract
        found = first_mention_documents([len(d.passages) for d in collection.documents], found)
    info = engine.info
    provenance = {"model": info.name, "model_version": info.version, "model_sha256": info.sha256}
    add_entities(collection, found, provenance, keep_existing)
    payload = await asyncio.to_thread(write_documents, collection, target, offsets)
    headers = {"x-documents": str(len(collection.documents)), "x-passages": str(len(texts)), "x-entities": str(sum(map(len, found)))}
    return Response(payload, media_type=MEDIA_TYPE[target], headers=headers)


_EXAMPLE_PUBTATOR = "1|t|Lithium induced nephrogenic diabetes insipidus.\\n1|a|IL-2 gene expression requires NF-kappa B.\\n"
OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/xml": {"schema": {"type": "string"}, "example": "<collection>...</collection>"},
            "application/json": {"schema": {"type": "object"}, "example": {"documents": []}},
            "text/plain": {"schema": {"type": "string"}, "example": _EXAMPLE_PUBTATOR},
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    },
    "responses": {
        "200": {
            "description": "The documents with entities added, in the output format.",
            "content": {media: {"schema": {"type": "string"}} for media in sorted(set(MEDIA_TYPE.values()))},
        }
    },
}
