"""Where things are, for tests to import (``conftest`` is not importable by name: there are two)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("BIONER_SHARED_DATA", ROOT.parent / "shared" / "data"))
JNLPBA_BUNDLE = ROOT / "models" / "bioner-minilm-jnlpba"
JOINT_BUNDLE = ROOT / "models" / "bioner-minilm-joint"
FAST_BUNDLE = ROOT / "models" / "bioner-minilm-l3-jnlpba"  # the 3-layer CRF student
DEFAULT_MODEL = JOINT_BUNDLE  # what the service serves when no model is configured
