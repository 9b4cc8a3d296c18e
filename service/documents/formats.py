"""Which format a file or request body is, and the one read/write dispatch for all of them."""

from __future__ import annotations

import gzip
import io
import re
from collections.abc import Callable
from enum import Enum
from pathlib import Path

from service.documents.bioc_json import read_bioc_json, write_bioc_json
from service.documents.bioc_xml import read_bioc_xml, write_bioc_xml
from service.documents.jsonl import read_jsonl_documents, write_jsonl_documents
from service.documents.model import Collection, Document, DocumentError, Passage
from service.documents.offsets import OffsetUnit
from service.documents.pubmed import gunzip, read_pubmed_xml
from service.documents.pubtator import read_pubtator, write_pubtator


class Format(str, Enum):
    BIOC_XML = "bioc_xml"
    BIOC_JSON = "bioc_json"
    PUBTATOR = "pubtator"
    JSONL = "jsonl"
    TEXT = "text"  # input only: a plain text file is one document with one passage
    PUBMED = "pubmed"  # input only: NLM's PubMed XML (.xml or .xml.gz)


WRITABLE = (Format.BIOC_XML, Format.BIOC_JSON, Format.PUBTATOR, Format.JSONL)
SUFFIX = {Format.BIOC_XML: ".xml", Format.BIOC_JSON: ".json", Format.PUBTATOR: ".pubtator", Format.JSONL: ".jsonl"}
MEDIA_TYPE = {
    Format.BIOC_XML: "application/xml",
    Format.BIOC_JSON: "application/json",
    Format.PUBTATOR: "text/plain; charset=utf-8",
    Format.JSONL: "application/x-ndjson",
}
_PUBTATOR_HEAD = re.compile(rb"^\s*[^|\s]+\|[ta]\|")


_BOM = b"\xef\xbb\xbf"


def sniff(data: bytes, name: str = "") -> Format:
    """The format of ``data`` from its first bytes (after a UTF-8 BOM; a gzip file by what it
    holds); a ``.txt`` file that is not PubTator is plain text whatever its first character."""
    if data[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as fh:
                inner = fh.read(4096)
        except (OSError, EOFError):
            return Format.PUBMED  # reading it says what is wrong with it
        return sniff(inner, name.removesuffix(".gz"))
    head = data[:4096].removeprefix(_BOM).lstrip()
    if name.lower().endswith(".txt") and not _PUBTATOR_HEAD.match(head):
        return Format.TEXT
    if head.startswith(b"<"):
        return Format.PUBMED if b"<PubmedArticleSet" in head or b"<!DOCTYPE PubmedArticleSet" in head else Format.BIOC_XML
    if head.startswith(b"{"):
        first_line = head.split(b"\n", 1)[0]
        if b'"documents"' in head and not first_line.rstrip().endswith(b"}"):
            return Format.BIOC_JSON
        return Format.BIOC_JSON if b'"documents"' in first_line else Format.JSONL
    if _PUBTATOR_HEAD.match(head):
        return Format.PUBTATOR
    if name.endswith(".jsonl"):
        return Format.JSONL
    return Format.TEXT


def read_documents(data: bytes, fmt: Format, unit: OffsetUnit = OffsetUnit.CODEPOINT, what: str = "input") -> Collection:
    """The documents in ``data``; anything wrong with them is a :class:`DocumentError` naming where."""
    try:
        collection = _read(data.removeprefix(_BOM), fmt, unit, what)
    except DocumentError:
        raise
    except UnicodeDecodeError as exc:
        raise DocumentError(f"{what}: not UTF-8: {exc}") from None
    except (ValueError, TypeError, KeyError, OverflowError, RecursionError, LookupError, EOFError, OSError) as exc:
        raise DocumentError(f"{what}: not readable as {fmt.value}: {type(exc).__name__}: {exc}") from None
    check(collection, what)
    return collection


def check(collection: Collection, what: str) -> None:
    """What every reader must have produced: text that is Unicode (no lone surrogates, which no
    tokenizer or encoder accepts) and annotations with at least one location."""
    for document in collection.documents:
        for passage in document.passages:
            try:
                passage.text.encode("utf-8")
            except UnicodeEncodeError:
                raise DocumentError(f"{what}: document {document.id}: the text holds a lone surrogate (not Unicode text)") from None
            for annotation in passage.annotations:
                if not annotation.locations:
                    raise DocumentError(f"{what}: document {document.id}, annotation {annotation.id}: no location")


def _read(data: bytes, fmt: Format, unit: OffsetUnit, what: str) -> Collection:
    if data[:2] == b"\x1f\x8b" and fmt is not Format.PUBMED:  # a gzipped BioC, PubTator or JSON Lines file
        data = gunzip(data, what).removeprefix(_BOM)
    if fmt is Format.PUBMED:
        return read_pubmed_xml(data, what, unit)[0]
    if fmt is Format.TEXT:
        return Collection([Document(Path(what).stem or "1", [Passage(0, data.decode("utf-8"))])])
    readers: dict[Format, Callable[[bytes, OffsetUnit, str], Collection]] = {
        Format.BIOC_XML: read_bioc_xml,
        Format.BIOC_JSON: read_bioc_json,
        Format.PUBTATOR: read_pubtator,
        Format.JSONL: read_jsonl_documents,
    }
    return readers[fmt](data, unit, what)


def write_documents(collection: Collection, fmt: Format, unit: OffsetUnit = OffsetUnit.CODEPOINT) -> bytes:
    writers: dict[Format, Callable[[Collection, OffsetUnit], bytes]] = {
        Format.BIOC_XML: write_bioc_xml,
        Format.BIOC_JSON: write_bioc_json,
        Format.PUBTATOR: write_pubtator,
        Format.JSONL: write_jsonl_documents,
    }
    if fmt not in writers:
        raise ValueError(f"{fmt.value} is an input format only; write one of {[f.value for f in WRITABLE]}")
    return writers[fmt](collection, unit)
