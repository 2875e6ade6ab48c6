"""The Helm chart: lint, render over every values file, validate every object against
Kubernetes' own schemas, and prove the gateway pods run the Envoy config the e2e tests run."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from kaizen_studio.cli import build_parser
from tests.deploy.helm import CHART, VALUES_FILES, by_kind, render, run
from tests.e2e.sidecar_procs import ENVOY_TEMPLATE, fill

# The chart's targets: the version Helm's client speaks and kubernetes-validate's newest.
KUBERNETES_VERSIONS = ("1.35.0", kubernetes_validate.latest_version())
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}  # prometheus-operator's, not Kubernetes'


def test_values_files_cover_the_shapes() -> None:
    names = {p.name for p in VALUES_FILES}
    assert {"minimal-values.yaml", "gateway-values.yaml", "production-values.yaml"} <= names


@pytest.mark.parametrize("values", VALUES_FILES, ids=lambda p: p.stem)
def test_helm_lint(values: Path) -> None:
    done = run("lint", "--strict", str(CHART), "-f", str(values))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("values", VALUES_FILES, ids=lambda p: p.stem)
def test_every_rendered_object_is_valid_kubernetes(values: Path) -> None:
    objects = render(values)
    assert objects
    for obj in objects:
        if obj["kind"] in CRD_KINDS:
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                name = f"{obj['kind']}/{obj['metadata']['name']}"
                pytest.fail(f"{values.stem}: {name} invalid for Kubernetes {version}: {error}")


def test_validation_catches_an_invalid_object() -> None:
    """The validator above is not a rubber stamp: a misspelt field is refused."""
    deployment = by_kind(render(VALUES_FILES[0]), "Deployment")[0]
    deployment["spec"]["replica"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def _pod(objects: list[dict[str, Any]], component: str) -> dict[str, Any]:
    workloads = by_kind(objects, "Deployment") + by_kind(objects, "StatefulSet")
    matching = [
        w for w in workloads if w["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    assert matching, component
    spec: dict[str, Any] = matching[0]["spec"]["template"]["spec"]
    return spec


def _production() -> list[dict[str, Any]]:
    return render(CHART / "ci" / "production-values.yaml")


def test_control_plane_probes_replicas_hpa_pdb_and_migrations() -> None:
    objects = _production()
    container = _pod(objects, "control-plane")["containers"][0]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
    hpa = by_kind(objects, "HorizontalPodAutoscaler")[0]
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert hpa["spec"]["minReplicas"] >= 2
    assert by_kind(objects, "PodDisruptionBudget")[0]["spec"]["minAvailable"] == 2
    job = by_kind(objects, "Job")[0]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-upgrade"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]


def test_pods_run_as_non_root_with_read_only_roots() -> None:
    objects = _production()
    for component in ("control-plane", "gateway"):
        pod = _pod(objects, component)
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, container["name"]
            assert context["allowPrivilegeEscalation"] is False, container["name"]


def test_secrets_come_from_existing_secrets_when_named() -> None:
    objects = _production()
    assert by_kind(objects, "Secret") == []  # nothing secret in values or in the release
    env = {e["name"]: e for e in _pod(objects, "control-plane")["containers"][0]["env"]}
    assert env["KAIZEN_MASTER_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "kaizen-master-key"
    assert env["KAIZEN_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "kaizen-postgres"
    assert env["KAIZEN_REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"] == "kaizen-redis"
    assert env["KAIZEN_SECRETS_BACKEND"]["value"] == "vault"
    gateway = {c["name"]: c for c in _pod(objects, "gateway")["containers"]}
    for name in ("sidecar", "gateway"):
        token = {e["name"]: e for e in gateway[name]["env"]}["KAIZEN_GATEWAY_TOKEN"]
        assert token["valueFrom"]["secretKeyRef"]["name"] in {
            "kaizen-gateway-public",
            "kaizen-gateway-internal",
        }


def test_missing_master_key_and_database_fail_the_render() -> None:
    done = run("template", "kz", str(CHART))
    assert done.returncode != 0
    assert "masterKey" in done.stderr


def test_gateway_pod_has_envoy_sidecar_gateway_and_state_volume() -> None:
    objects = _production()
    persisted = by_kind(objects, "StatefulSet")[0]
    pod = persisted["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["envoy", "sidecar", "gateway"]
    claim = persisted["spec"]["volumeClaimTemplates"][0]
    assert claim["metadata"]["name"] == "state"
    for container in pod["containers"][1:]:
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert mounts["state"] == env["KAIZEN_HOME"] == "/var/lib/kaizen"
    ephemeral = by_kind(objects, "Deployment")
    gateway = next(d for d in ephemeral if "gateway" in d["metadata"]["name"])
    volumes = {v["name"]: v for v in gateway["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes["state"]


def test_network_policy_admits_only_envoy_and_prometheus_to_gateway_pods() -> None:
    objects = _production()
    policy = next(
        p for p in by_kind(objects, "NetworkPolicy") if p["metadata"]["name"].endswith("gateways")
    )
    rules = policy["spec"]["ingress"]
    ports = sorted(port["port"] for rule in rules for port in rule["ports"])
    assert ports == [9192, 10000]  # Envoy's listener, the sidecar's /metrics; not 9191 or 8080
    metrics_rule = next(r for r in rules if r["ports"][0]["port"] == 9192)
    assert metrics_rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == (
        "prometheus"
    )
    envoy_rule = next(r for r in rules if r["ports"][0]["port"] == 10000)
    assert envoy_rule["from"][0]["namespaceSelector"]  # values' gatewayIngressFrom
    # The sidecar's ext_authz still answers only loopback peers (its default trusted proxies).
    sidecar = {c["name"]: c for c in _pod(objects, "gateway")["containers"]}["sidecar"]
    assert "KAIZEN_SIDECAR_TRUSTED_PROXIES" not in {e["name"] for e in sidecar["env"]}


def _rendered_envoy(objects: list[dict[str, Any]]) -> str:
    config_maps = [c for c in by_kind(objects, "ConfigMap") if "envoy" in c["metadata"]["name"]]
    assert len(config_maps) == 1
    text: str = config_maps[0]["data"]["envoy.yaml"]
    return text


def test_envoy_config_is_the_one_the_e2e_tests_run() -> None:
    """deploy/envoy/envoy.yaml filled as tests/e2e fill it; the listener alone rebound."""
    rendered = yaml.safe_load(_rendered_envoy(_production()))
    expected = yaml.safe_load(
        fill(
            ENVOY_TEMPLATE.read_text(),
            LISTEN_PORT=10000,
            ADMIN_PORT=9901,
            SIDECAR_HTTP_PORT=9192,
            UPSTREAM_PORT=8080,
        )
    )
    listener = expected["static_resources"]["listeners"][0]["address"]["socket_address"]
    assert listener["address"] == "127.0.0.1"
    listener["address"] = "0.0.0.0"  # noqa: S104  (the pod's addresses: the Service reaches Envoy)
    assert rendered == expected
    # Admin, sidecar and gateway stay on loopback inside the pod.
    assert rendered["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    authz = rendered["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    ext_authz = authz["typed_config"]["http_filters"][0]["typed_config"]
    assert ext_authz["failure_mode_allow"] is False


def test_envoy_accepts_the_rendered_config(tmp_path: Path) -> None:
    envoy = shutil.which("envoy") or str(Path(sys.executable).with_name("envoy"))
    config = tmp_path / "envoy.yaml"
    config.write_text(_rendered_envoy(_production()))
    done = subprocess.run(
        [envoy, "--mode", "validate", "-c", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_prometheus_rule_is_the_tested_rule_file() -> None:
    rule = by_kind(_production(), "PrometheusRule")[0]
    source = yaml.safe_load((CHART.parents[1] / "prometheus" / "kaizen-alerts.yaml").read_text())
    assert rule["spec"] == source
    monitor = by_kind(_production(), "ServiceMonitor")[0]
    jobs = {
        r.get("replacement")
        for endpoint in monitor["spec"]["endpoints"]
        for r in endpoint.get("relabelings", [])
        if r.get("targetLabel") == "job"
    }
    assert jobs == {"kaizen-control-plane", "kaizen-sidecar"}  # the jobs the rules name


def test_prometheus_reads_the_control_planes_metrics_with_its_token() -> None:
    for values, secret in (
        (CHART / "ci" / "production-values.yaml", "kaizen-metrics-token"),
        (CHART / "ci" / "gateway-values.yaml", "kz-kaizen-studio-metrics-token"),
    ):
        objects = render(values)
        env = {e["name"]: e for e in _pod(objects, "control-plane")["containers"][0]["env"]}
        assert env["KAIZEN_METRICS_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == secret
        endpoint = by_kind(objects, "ServiceMonitor")[0]["spec"]["endpoints"][0]
        assert endpoint["authorization"]["credentials"]["name"] == secret
    made = [s for s in by_kind(objects, "Secret") if s["metadata"]["name"] == secret]
    assert len(made[0]["data"]["token"]) >= 40  # random, made by the chart


def test_backup_cronjobs_take_logical_and_base_backups_into_the_pvc() -> None:
    cronjobs = {c["metadata"]["name"]: c for c in by_kind(_production(), "CronJob")}
    assert set(cronjobs) == {"kz-kaizen-studio-backup-logical", "kz-kaizen-studio-backup-base"}
    for kind, flags in (("logical", []), ("base", ["--base"])):
        job = cronjobs[f"kz-kaizen-studio-backup-{kind}"]
        assert job["spec"]["concurrencyPolicy"] == "Forbid"
        pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        container = pod["containers"][0]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        backup_line = container["args"][0].splitlines()[0]
        words = shlex.split(backup_line.replace("$(date -u +%Y%m%dT%H%M%SZ)", "T"))
        assert words == ["kaizen-studio", "backup", *flags, f"/backups/{kind}-T"]
        parsed = build_parser().parse_args(words[1:])  # a command the CLI knows
        assert parsed.base is bool(flags)
        env = {e["name"]: e for e in container["env"]}
        assert env["KAIZEN_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "kaizen-postgres"
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["backups"]["persistentVolumeClaim"]["claimName"] == "kaizen-backups"


def test_backups_are_off_by_default_and_need_a_pvc_when_on() -> None:
    assert by_kind(render(CHART / "ci" / "minimal-values.yaml"), "CronJob") == []
    done = run(
        "template",
        "kz",
        str(CHART),
        "-f",
        str(CHART / "ci" / "minimal-values.yaml"),
        "--set",
        "backups.base.enabled=true",
    )
    assert done.returncode != 0
    assert "backups.persistentVolumeClaim" in done.stderr
