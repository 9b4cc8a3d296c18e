"""PubMed XML as NLM distributes it (``pubmed*.xml.gz`` baseline and update files): PMID, title
and abstract sections. Citations an update file deletes (``DeleteCitation``) are skipped, and
their PMIDs returned so a bulk run can drop them from earlier output."""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from xml.etree.ElementTree import Element

from service.documents.model import Collection, Document, DocumentError, Passage
from service.documents.offsets import OffsetUnit, length
from service.documents.xmlsafe import parse_xml


def _flat(element: Element | None) -> str:
    """Inline markup (<i>, <sup>) flattened, whitespace runs collapsed."""
    return " ".join("".join(element.itertext()).split()) if element is not None else ""


_MAX_UNPACKED = 2 << 30  # a PubMed baseline file unpacks to about 200 MB; refuse what could only be a zip bomb


def gunzip(data: bytes, what: str) -> bytes:
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as fh:
        out = fh.read(_MAX_UNPACKED + 1)
    if len(out) > _MAX_UNPACKED:
        raise DocumentError(f"{what}: unpacks to more than {_MAX_UNPACKED >> 30} GiB")
    return out


def read_pubmed_xml(data: bytes, what: str = "PubMed XML", unit: OffsetUnit = OffsetUnit.CODEPOINT) -> tuple[Collection, list[str]]:
    if data[:2] == b"\x1f\x8b":
        data = gunzip(data, what)
    root = parse_xml(data, what)
    if root.tag != "PubmedArticleSet":
        raise DocumentError(f"{what}: the root element is <{root.tag}>, not <PubmedArticleSet>")
    deleted = [p.text or "" for p in root.findall("./DeleteCitation/PMID")]
    documents = []
    for article in root.iter("PubmedArticle"):
        citation = article.find("MedlineCitation")
        if citation is None:
            continue
        pmid = (citation.findtext("PMID") or "").strip()
        title = _flat(citation.find("./Article/ArticleTitle"))
        passages = [Passage(0, title, {"type": "title"})]
        offset = length(title, unit) + 1
        for section in citation.findall("./Article/Abstract/AbstractText"):
            text = _flat(section)
            if not text:
                continue
            infons = {"type": "abstract"}
            if section.get("Label"):
                infons["section"] = section.get("Label", "")
            passages.append(Passage(offset, text, infons))
            offset += length(text, unit) + 1
        documents.append(Document(pmid, passages))
    return Collection(documents, source="PubMed"), deleted


def read_pubmed_file(path: Path) -> tuple[Collection, list[str]]:
    return read_pubmed_xml(path.read_bytes(), str(path))
