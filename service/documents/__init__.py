"""Documents in, documents out: BioC XML, BioC JSON, PubTator, the project's JSON Lines and PubMed
XML, read into one model and written back losslessly; shared by the API, the CLI and training.

Pure Python (defusedxml for every XML parse): no server, no model.
"""

from service.documents.model import Annotation, Collection, Document, Location, Passage, Relation

__all__ = ["Annotation", "Collection", "Document", "Location", "Passage", "Relation"]
