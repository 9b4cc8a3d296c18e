"""Annotated text in the formats labs keep (brat, CoNLL columns, JSON Lines), read into one
:class:`Document` record: raw text plus character spans; and strict span scoring. Pure Python
(no torch): training, `bioner evaluate` and the service's `/evaluate` share it."""

from service.corpora.document import Document, Span
from service.corpora.load import read_corpus

__all__ = ["Document", "Span", "read_corpus"]
