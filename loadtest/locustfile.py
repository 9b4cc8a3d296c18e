"""Locust load profile: realistic biomedical texts of mixed length, single texts and small batches.

Headless run that writes CSV statistics (loopback only):

    locust -f loadtest/locustfile.py --headless -u 32 -r 8 -t 60s \
        --host http://127.0.0.1:8000 --csv loadtest/results/locust

Texts come from ``BIONER_LOADTEST_TEXTS`` (a folder of .txt files, default the JNLPBA abstracts
beside the project) with a few built-in sentences as a fallback.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from locust import HttpUser, between, task

_FALLBACK = [
    "IL-2 gene expression and NF-kappa B activation through CD28 requires reactive oxygen production by 5-lipoxygenase.",
    "Tyrosine phosphorylation of STAT1 and STAT3 in Jurkat cells was induced by interferon-alpha.",
    "The human c-myc promoter binds the transcription factor E2F in HeLa cells.",
]


def _texts() -> list[str]:
    folder = Path(os.environ.get("BIONER_LOADTEST_TEXTS", Path(__file__).resolve().parents[2] / "shared" / "data" / "jnlpba" / "train"))
    abstracts = [p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.txt"))[:400]] if folder.is_dir() else []
    sentences = [s.strip() + "." for a in abstracts[:100] for s in a.split(". ") if len(s) > 40]
    return abstracts + sentences[:400] or _FALLBACK


TEXTS = _texts()


class LabClient(HttpUser):
    wait_time = between(0.0, 0.2)

    @task(6)
    def one_text(self) -> None:
        self.client.post("/ner", json={"text": random.choice(TEXTS)}, name="/ner [1 text]")

    @task(2)
    def small_batch(self) -> None:
        self.client.post("/ner", json={"texts": random.sample(TEXTS, k=min(4, len(TEXTS)))}, name="/ner [4 texts]")

    @task(1)
    def filtered(self) -> None:
        self.client.post(
            "/ner", json={"text": random.choice(TEXTS), "labels": ["protein", "DNA"], "min_score": 0.5}, name="/ner [filtered]"
        )
