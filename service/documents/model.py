"""The document model every format reads into and writes from.

BioC's shape: a collection of documents, each a list of passages (title, abstract, sections) with
their own offsets. Inside the model an annotation's locations are code-point positions in its
passage's text, so they always slice it; a passage's ``offset`` is kept exactly as the source
wrote it, in the source's units. Writers turn positions back into document offsets in the unit
asked for (:mod:`service.documents.offsets`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from service.errors import MalformedDocumentError


class DocumentError(MalformedDocumentError):
    """Input that cannot be read as the format it claims to be; the message says where (400)."""


@dataclass(frozen=True)
class Location:
    start: int  # code points into the passage text
    end: int  # exclusive


@dataclass
class Annotation:
    id: str
    infons: dict[str, str]
    locations: list[Location]
    text: str

    @property
    def type(self) -> str:
        return self.infons.get("type", "")

    @property
    def start(self) -> int:
        return min(loc.start for loc in self.locations)

    @property
    def end(self) -> int:
        return max(loc.end for loc in self.locations)


@dataclass
class Relation:
    id: str
    infons: dict[str, str]
    nodes: list[tuple[str, str]] = field(default_factory=list)  # (annotation id, role)


@dataclass
class Passage:
    offset: int  # the passage's start in the document, in the source's offset unit
    text: str
    infons: dict[str, str] = field(default_factory=dict)
    annotations: list[Annotation] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)


@dataclass
class Document:
    id: str
    passages: list[Passage]
    infons: dict[str, str] = field(default_factory=dict)
    relations: list[Relation] = field(default_factory=list)


@dataclass
class Collection:
    documents: list[Document]
    source: str = ""
    date: str = ""
    key: str = ""
    infons: dict[str, str] = field(default_factory=dict)

    def passages(self) -> list[Passage]:
        return [p for d in self.documents for p in d.passages]
