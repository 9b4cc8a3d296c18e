"""Corpus readers. Every format becomes :class:`Document`: raw text plus character spans."""

from train.readers.document import Document, Span
from train.readers.load import read_corpus

__all__ = ["Document", "Span", "read_corpus"]
