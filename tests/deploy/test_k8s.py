"""The Kubernetes manifests are valid against the API schema and agree with the service's settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

from service.api.routes import make_router  # noqa: E402
from service.api.schemas import request_model  # noqa: E402
from service.metrics import Metrics  # noqa: E402
from service.settings import Settings  # noqa: E402

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUBERNETES = "1.31.0"


def manifests() -> dict[str, dict[str, Any]]:
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs[path.name] = yaml.safe_load(path.read_text())
    return docs


@pytest.mark.parametrize("name", sorted(manifests()))
def test_manifest_is_valid_for_the_api(name: str) -> None:
    kubernetes_validate.validate(manifests()[name], KUBERNETES, strict=True)


def test_kustomization_lists_existing_files() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert listed and all((K8S / f).is_file() for f in listed) and "hpa-cpu.yaml" not in listed  # one HPA at a time


def container() -> dict[str, Any]:
    [c] = manifests()["deployment.yaml"]["spec"]["template"]["spec"]["containers"]
    return c


def test_env_names_are_settings_and_ports_match() -> None:
    env = {e["name"]: e["value"] for e in container()["env"]}
    unknown = [k for k in env if k.removeprefix("BIONER_").lower() not in Settings.model_fields]
    assert unknown == []
    settings = Settings(**{k.removeprefix("BIONER_").lower(): v for k, v in env.items()})  # every value parses
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    assert ports == {"http": settings.port, "metrics": settings.metrics_port}
    service_ports = {p["targetPort"] for p in manifests()["service.yaml"]["spec"]["ports"]}
    assert service_ports == set(ports)


def test_probes_hit_real_routes_and_the_drain_fits_the_grace_period() -> None:
    routes = {r.path for r in make_router(request_model(1, 1)).routes}  # type: ignore[attr-defined]
    c = container()
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready" and c["startupProbe"]["httpGet"]["path"] == "/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert {"/ready", "/health"} <= routes
    env = {e["name"]: float(e["value"]) for e in c["env"] if e["name"].startswith("BIONER_DRAIN")}
    pre_stop = float(c["lifecycle"]["preStop"]["exec"]["command"][-1].split("sleep(")[1].rstrip(")"))
    grace = manifests()["deployment.yaml"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert pre_stop + env["BIONER_DRAIN_GRACE_S"] + env["BIONER_DRAIN_TIMEOUT_S"] < grace


def test_pod_is_locked_down() -> None:
    pod = manifests()["deployment.yaml"]["spec"]["template"]["spec"]
    security = container()["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"]["drop"] == ["ALL"]


def test_autoscaler_metrics_exist() -> None:
    exported = {m.name for m in Metrics().registry.collect()}
    [metric] = manifests()["hpa-queue.yaml"]["spec"]["metrics"]
    assert metric["pods"]["metric"]["name"] in exported
    rules = yaml.safe_load(manifests()["prometheus-adapter.yaml"]["data"]["config.yaml"])["rules"]
    assert {r["name"]["as"] for r in rules} <= exported
    # one value per pod, however many models (each its own `model` series) the pod serves
    assert all(r["metricsQuery"].startswith(("max by (<<.GroupBy>>)", "sum by (<<.GroupBy>>)")) for r in rules)
