"""Training, evaluation and export of the NER checkpoints the service loads (``train`` extra)."""
