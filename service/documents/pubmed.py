"""PubMed XML as NLM distributes it (``pubmed*.xml.gz`` baseline and update files): PMID, title
and abstract sections. Citations an update file deletes (``DeleteCitation``) are skipped, and
their PMIDs returned so a bulk run can drop them from earlier output."""

from __future__ import annotations

import gzip
from pathlib import Path
from xml.etree.ElementTree import Element

from service.documents.model import Collection, Document, Passage
from service.documents.xmlsafe import parse_xml


def _flat(element: Element | None) -> str:
    """Inline markup (<i>, <sup>) flattened, whitespace runs collapsed."""
    return " ".join("".join(element.itertext()).split()) if element is not None else ""


def read_pubmed_xml(data: bytes, what: str = "PubMed XML") -> tuple[Collection, list[str]]:
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    root = parse_xml(data, what)
    deleted = [p.text or "" for p in root.findall("./DeleteCitation/PMID")]
    documents = []
    for article in root.iter("PubmedArticle"):
        citation = article.find("MedlineCitation")
        if citation is None:
            continue
        pmid = (citation.findtext("PMID") or "").strip()
        title = _flat(citation.find("./Article/ArticleTitle"))
        passages = [Passage(0, title, {"type": "title"})]
        offset = len(title) + 1
        for section in citation.findall("./Article/Abstract/AbstractText"):
            text = _flat(section)
            if not text:
                continue
            infons = {"type": "abstract"}
            if section.get("Label"):
                infons["section"] = section.get("Label", "")
            passages.append(Passage(offset, text, infons))
            offset += len(text) + 1
        documents.append(Document(pmid, passages))
    return Collection(documents, source="PubMed"), deleted


def read_pubmed_file(path: Path) -> tuple[Collection, list[str]]:
    return read_pubmed_xml(path.read_bytes(), str(path))
