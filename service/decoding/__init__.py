"""Pure text -> windows -> spans code shared by the service and the training evaluation.

Depends only on numpy and ``tokenizers`` so that the number `evaluate` reports is computed by
exactly the code that answers ``POST /ner``.
"""
