"""The one XML parser entry point: defusedxml, so entity expansion (billion laughs) and external
entities are refused, and a malformed file is a :class:`DocumentError` naming its line."""

from __future__ import annotations

from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from service.documents.model import DocumentError


def parse_xml(data: bytes | str, what: str) -> Element:
    try:
        return fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)  # type: ignore[no-any-return]
    except ParseError as exc:
        line, column = getattr(exc, "position", (0, 0))
        raise DocumentError(f"{what}: malformed XML at line {line}, column {column}: {exc.msg}") from None
    except DefusedXmlException as exc:
        raise DocumentError(
            f"{what}: refused: {type(exc).__name__} (entity declarations and external references are not accepted)"
        ) from None
