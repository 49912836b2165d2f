"""Autoscaling on the expected wait: the prometheus-adapter and KEDA components render on every overlay and
validate, take the overlay's bounds, and every query they make names a metric and labels the app exports.

kubernetes-validate knows only core types, so KEDA's ScaledObject is checked here against the fields KEDA
documents for it and for its Prometheus trigger (keda.sh/v1alpha1), and its HPA behaviour is validated as
part of an HPA. KEDA, prometheus-adapter and a cluster to run them are not available here."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from tests.deploy.containers import K8S, kustomize
from tests.deploy.test_k8s import OVERLAYS, resources, validate
from tests.deploy.test_observability import TARGET_LABELS, check_query, exported_metrics, selectors

COMPONENTS = K8S / "components"
ADAPTER_CONFIG = K8S / "prometheus-adapter" / "config.yaml"
SCALED_OBJECT = COMPONENTS / "autoscale-keda" / "scaled-object" / "scaledobject.yaml"
# Labels that Kubernetes service discovery gives a scraped pod's series, and that the queries select on.
POD_LABELS = TARGET_LABELS | {"namespace", "pod"}

# KEDA's ScaledObject spec and the Prometheus scaler's trigger metadata, as KEDA documents them.
SCALED_OBJECT_SPEC = {"scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod", "idleReplicaCount",
                      "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "triggers"}
SCALE_TARGET_REF = {"apiVersion", "kind", "name", "envSourceContainerName"}
ADVANCED = {"horizontalPodAutoscalerConfig", "restoreToOriginalReplicaCount", "scalingModifiers"}
HPA_CONFIG = {"name", "behavior"}
TRIGGER = {"type", "name", "metadata", "authenticationRef", "metricType", "useCachedMetrics"}
METRIC_TYPES = {"AverageValue", "Value", "Utilization"}
PROMETHEUS_METADATA = {"serverAddress", "query", "queryParameters", "threshold", "activationThreshold", "namespace",
                       "customHeaders", "ignoreNullValues", "unsafeSsl", "timeout", "authModes"}
PROMETHEUS_REQUIRED = {"serverAddress", "query", "threshold"}


def with_component(overlay: str, component: str, directory: Path) -> str:
    """The overlay with the component added, as an operator's own overlay adds it (docs/deploy.md)."""
    (directory / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(K8S / "overlays" / overlay, directory)],
        "components": [os.path.relpath(COMPONENTS / component, directory)],
    }))
    return kustomize(directory)


def by_kind(manifest: str) -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(manifest) if doc and doc["kind"] != "ConfigMap"}


def quantity(value: str) -> float:
    """A Kubernetes quantity as a number, for the forms used here ("100m", "2")."""
    return int(value[:-1]) / 1000 if value.endswith("m") else float(value)


def adapter_rule() -> dict:
    (rule,) = yaml.safe_load(ADAPTER_CONFIG.read_text())["rules"]
    return rule


def hpa_metric_of_the_adapter_component() -> dict:
    (patch,) = yaml.safe_load((COMPONENTS / "autoscale-prometheus-adapter" / "kustomization.yaml").read_text())["patches"]
    (replace,) = [op for op in yaml.safe_load(patch["patch"]) if op["path"] == "/spec/metrics"]
    (metric,) = replace["value"]
    return metric


def prometheus_trigger(scaled_object: dict) -> dict:
    (trigger,) = scaled_object["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    return trigger


@pytest.mark.container
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_adapter_component_scales_every_overlay_on_the_expected_wait(overlay, tmp_path):
    manifest = with_component(overlay, "autoscale-prometheus-adapter", tmp_path)
    proc = validate(manifest)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    hpa, plain = by_kind(manifest)["HorizontalPodAutoscaler"], resources(overlay)["HorizontalPodAutoscaler"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == adapter_rule()["name"]["as"]
    # Only the signal changes: the overlay's bounds (the gpu overlay's 1 to 4) and scale-down pace stay.
    for field in ("minReplicas", "maxReplicas", "behavior", "scaleTargetRef"):
        assert hpa["spec"][field] == plain["spec"][field], field


@pytest.mark.container
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_component_replaces_the_hpa_with_a_scaled_object(overlay, tmp_path):
    manifest = with_component(overlay, "autoscale-keda", tmp_path)
    core = [doc for doc in yaml.safe_load_all(manifest) if doc["kind"] != "ScaledObject"]
    proc = validate(yaml.safe_dump_all(core))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    kinds = by_kind(manifest)
    # KEDA makes its own HPA from the ScaledObject; a second one on the Deployment would fight it.
    assert "HorizontalPodAutoscaler" not in kinds
    scaled, plain = kinds["ScaledObject"], resources(overlay)["HorizontalPodAutoscaler"]["spec"]
    check_scaled_object(scaled)
    deployment = kinds["Deployment"]["metadata"]["name"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment
    assert scaled["spec"]["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    # The query's pod pattern takes the Deployment's pods (NAME-REPLICASET-SUFFIX) and no other Deployment's.
    ((_, matchers),) = selectors(prometheus_trigger(scaled)["metadata"]["query"])
    pods = re.compile(re.fullmatch(r'=~"(.*)"', matchers["pod"])[1])
    assert pods.fullmatch(f"{deployment}-5d4b7c9f8-x2k4q")
    assert not pods.fullmatch(f"{deployment}-canary-5d4b7c9f8-x2k4q")
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (plain["minReplicas"], plain["maxReplicas"])
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior == plain["behavior"]
    # The behaviour is an HPA's: validated strictly as one, with the ScaledObject's bounds.
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "keda-hpa"},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
                    "minReplicas": scaled["spec"]["minReplicaCount"], "maxReplicas": scaled["spec"]["maxReplicaCount"],
                    "behavior": behavior}}
    proc = validate(yaml.safe_dump(hpa))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def check_scaled_object(scaled: dict) -> None:
    """The fields KEDA documents, the types its CRD gives them, and what the Prometheus scaler requires."""
    assert (scaled["apiVersion"], scaled["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
    spec = scaled["spec"]
    assert spec.keys() <= SCALED_OBJECT_SPEC, sorted(spec.keys() - SCALED_OBJECT_SPEC)
    assert {"scaleTargetRef", "triggers"} <= spec.keys()
    assert spec["scaleTargetRef"].keys() <= SCALE_TARGET_REF and "name" in spec["scaleTargetRef"]
    assert spec.get("advanced", {}).keys() <= ADVANCED
    assert spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).keys() <= HPA_CONFIG
    for field in ("pollingInterval", "cooldownPeriod", "minReplicaCount", "maxReplicaCount"):
        assert isinstance(spec.get(field, 0), int), field
    assert 0 < spec.get("minReplicaCount", 0) <= spec["maxReplicaCount"], "minReplicaCount 0 would scale to zero"
    trigger = prometheus_trigger(scaled)
    assert trigger.keys() <= TRIGGER, sorted(trigger.keys() - TRIGGER)
    assert trigger.get("metricType", "AverageValue") in METRIC_TYPES
    metadata = trigger["metadata"]
    assert metadata.keys() <= PROMETHEUS_METADATA, sorted(metadata.keys() - PROMETHEUS_METADATA)
    assert PROMETHEUS_REQUIRED <= metadata.keys(), sorted(PROMETHEUS_REQUIRED - metadata.keys())
    # The CRD types every metadata value as a string: an unquoted false or 0.1 is refused.
    assert all(isinstance(value, str) for value in metadata.values()), metadata
    assert float(metadata["threshold"]) > 0
    assert metadata.get("ignoreNullValues", "true") in ("true", "false")


def test_check_scaled_object_catches_a_misspelt_field_and_an_unquoted_value():
    """The structure check above has teeth."""
    scaled = yaml.safe_load(SCALED_OBJECT.read_text())
    scaled["spec"] |= {"minReplicaCount": 1, "maxReplicaCount": 2}  # as the kustomization copies them in
    check_scaled_object(scaled)
    for broken in ({"maxReplicas": 2}, {"triggers": [{**prometheus_trigger(scaled), "metricTyp": "Value"}]},
                   {"triggers": [{**prometheus_trigger(scaled), "metadata": {**prometheus_trigger(scaled)["metadata"],
                                                                             "ignoreNullValues": False}}]}):
        with pytest.raises(AssertionError):
            check_scaled_object(scaled | {"spec": scaled["spec"] | broken})


def test_adapter_rule_serves_the_exported_gauge_per_pod():
    """The series the adapter discovers and the query it runs name the app's metric and labels, per pod."""
    exported = exported_metrics()
    rule = adapter_rule()
    check_query(rule["seriesQuery"], exported, target_labels=POD_LABELS)
    (series,) = {name for name, _ in selectors(rule["seriesQuery"])}
    assert rule["name"]["matches"] == f"^{series}$"
    assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
    # The adapter fills these in for the pods the HPA asks about.
    query = (rule["metricsQuery"].replace("<<.Series>>", series).replace("<<.GroupBy>>", "pod")
             .replace("<<.LabelMatchers>>", 'namespace="default",pod=~"distilserve-a|distilserve-b"'))
    assert "<<" not in query
    check_query(query, exported, target_labels=POD_LABELS)
    assert query.startswith("max by (pod) "), "one value per pod: the slowest of its models"


def test_keda_query_names_the_exported_gauge_and_both_paths_share_the_target():
    exported = exported_metrics()
    trigger = prometheus_trigger(yaml.safe_load(SCALED_OBJECT.read_text()))
    check_query(trigger["metadata"]["query"], exported, target_labels=POD_LABELS)
    assert "distilserve_expected_wait_seconds" in trigger["metadata"]["query"]
    # Both divide a total by the replicas (AverageValue), so the same target means the same replicas.
    metric = hpa_metric_of_the_adapter_component()
    assert trigger["metricType"] == metric["pods"]["target"]["type"] == "AverageValue"
    assert float(trigger["metadata"]["threshold"]) == quantity(metric["pods"]["target"]["averageValue"])


@pytest.mark.container
def test_adapter_configuration_validates_and_keeps_its_name():
    manifest = kustomize(K8S / "prometheus-adapter")
    proc = validate(manifest)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (config_map,) = yaml.safe_load_all(manifest)
    # The name the docs pass to the chart as rules.existing: no hash suffix.
    assert config_map["metadata"] == {"name": "distilserve-prometheus-adapter", "namespace": "monitoring"}
    assert yaml.safe_load(config_map["data"]["config.yaml"]) == yaml.safe_load(ADAPTER_CONFIG.read_text())
