"""Whole corpora from the command line (``bioner annotate``): files in, one output file per input
file, the engine's pipeline in-process (no HTTP), on local processes or on Ray."""
