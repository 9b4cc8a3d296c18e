"""The Grafana dashboard only queries metrics the service really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import generate_latest

from service.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]


def exported_names() -> set[str]:
    metrics = Metrics()
    metrics.batcher_hooks("m")  # a model's series exist once its batcher does
    metrics.requests.labels("/ner", "POST", "200").inc()
    metrics.entities.labels("m", "protein").inc()
    metrics.entity_score.labels("m", "protein").observe(0.9)
    metrics.refused.labels("overloaded").inc()
    metrics.dropped.labels("m", "cancelled").inc()
    metrics.describe_model("m", {"name": "m", "version": "1", "sha256": "0", "provider": "cpu", "max_length": "128"})
    metrics.self_check.labels("m").set(1)
    metrics.request_seconds.labels("/ner").observe(0.1)
    text = generate_latest(metrics.registry).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_dashboard_is_valid_and_uses_real_metrics() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "bioner.json").read_text())
    names = exported_names()
    queried = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            queried |= set(re.findall(r"\bbioner_[a-z_]+", target["expr"]))
    assert queried and queried <= names, queried - names


def test_metric_names_follow_conventions() -> None:
    for name in exported_names():
        if name.endswith(("_bucket", "_sum", "_count", "_created")):
            continue
        assert name.startswith("bioner_")


def test_compose_stack_mounts_files_that_exist() -> None:
    import pytest

    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert set(compose["services"]) == {"bioner", "prometheus", "grafana"}
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert (ROOT / source).exists(), source
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    [job] = prometheus["scrape_configs"]
    port = compose["services"]["bioner"]["environment"]["BIONER_METRICS_PORT"]  # the metrics port, off the API's keys
    assert job["metrics_path"] == "/metrics" and job["static_configs"][0]["targets"] == [f"bioner:{port}"]
    datasource = yaml.safe_load((ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "bioner.json").read_text())
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert uids == {datasource["datasources"][0]["uid"]}
