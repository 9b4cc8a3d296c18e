"""Biomedical NER inference service.

Importing this package is cheap on purpose: the training module imports
``service.decoding`` and must not pull FastAPI or ONNX Runtime with it.
"""

__version__ = "0.1.0"
