"""deploy/k8s/, rendered by the real ``kubectl kustomize``, checked without a cluster.

- every overlay, and the network-policy component taken into the cpu and gpu overlays, against the
  Kubernetes schemas (kubernetes-validate --strict);
- the gRPC probes on the real port and on health service names the real server answers for, and
  threads within the CPU the pods request;
- rolling without failing a job: a new pod ready before an old one goes, a PodDisruptionBudget on
  the Deployment's own pods, preStop + the server's grace inside terminationGracePeriodSeconds;
- every container read-only, non-root, unprivileged, seccomp RuntimeDefault;
- the HorizontalPodAutoscaler on the Deployment, the KEDA alternative on the server's real queue
  metric, and a NetworkPolicy that admits labelled clients and the monitoring namespace only.

tests/e2e/test_docker_image.py runs the image as the cpu pod would (read-only root, no
capabilities, the overlay's environment) where a Docker engine can start.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from heatmap_server.metrics import Metrics

from deployment_files import (
    K8S,
    OVERLAYS,
    assert_server_settings,
    final_stage,
    k8s_env,
    kustomize,
    one,
    only,
    prestop_seconds,
    server_container,
)

VARIANTS = {"cpu": "cpu", "cuda": "gpu"}  # the server's device -> the variant label
NETWORK_POLICY = K8S / "components" / "network-policy"
# The exit itself after the grace: three replicas stopping at once on 2 busy cores took 8 s.
EXIT_MARGIN_S = 10


def _edited(tmp_path: Path, overlay: str, edit: Callable[[dict], None]) -> list[dict]:
    """A copy of deploy/k8s whose ``overlay`` kustomization is changed by ``edit``, rendered: the
    change a user makes to the overlay, e.g. taking in a component."""
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree)
    path = tree / "overlays" / overlay / "kustomization.yaml"
    kustomization = yaml.safe_load(path.read_text())
    edit(kustomization)
    path.write_text(yaml.safe_dump(kustomization))
    return kustomize(path.parent)


def _with_network_policy(tmp_path: Path, overlay: str) -> list[dict]:
    def add(kustomization: dict) -> None:
        kustomization.setdefault("components", []).append("../../components/network-policy")
    return _edited(tmp_path / overlay, overlay, add)


def _pod_labels(deployment: dict) -> dict[str, str]:
    return deployment["spec"]["template"]["metadata"]["labels"]


def _selects(selector: dict, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector: matchLabels and matchExpressions, all of them."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for term in selector.get("matchExpressions", []):
        key, values = term["key"], term.get("values", [])
        if not {"In": key in labels and labels[key] in values,
                "NotIn": labels.get(key) not in values,
                "Exists": key in labels,
                "DoesNotExist": key not in labels}[term["operator"]]:
            return False
    return True


# --- the schemas, the probes, the threads ------------------------------------------------------

def test_k8s_overlays_follow_the_kubernetes_schemas(tmp_path):
    assert [path.name for path in OVERLAYS] == ["autoscale", "cpu", "gpu"]
    rendered = {overlay.name: kustomize(overlay) for overlay in OVERLAYS}
    for overlay in ("cpu", "gpu"):
        rendered[f"{overlay}-network-policy"] = _with_network_policy(tmp_path, overlay)
    files = []
    for name, docs in rendered.items():
        files.append(tmp_path / f"{name}.yaml")
        files[-1].write_text(yaml.safe_dump_all(docs))
    done = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet",
                           *map(str, files)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _health(target: str, service: str) -> str:
    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=10)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def test_k8s_probes_use_the_real_port_and_health_services(live_server):
    uid = int(one(final_stage(), "USER").value[0].split(":")[0])
    probed: set[str] = set()
    devices = set()
    for overlay in OVERLAYS:
        docs = kustomize(overlay)
        service, deployment = only(docs, "Service"), only(docs, "Deployment")
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]
        assert deployment["spec"]["selector"]["matchLabels"].items() \
            <= pod["metadata"]["labels"].items()
        assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items(), name
        assert pod["spec"]["securityContext"]["runAsUser"] == uid
        container = server_container(deployment)
        config = assert_server_settings(k8s_env(container), name)
        devices.add(config.device)
        assert service["spec"]["selector"]["variant"] == VARIANTS[config.device], \
            "the Service picks its variant"
        assert [*one(final_stage(), "ENTRYPOINT").value, *container["args"]] == \
            ["heatmap-server", "serve"]
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert ports == {"grpc": config.port, "metrics": config.metrics_port}, name
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = container[kind]["grpc"]  # the kubelet's native gRPC health probe
            assert probe["port"] == config.port, f"{name} {kind}"
            probed.add(probe.get("service", ""))
        requests = container["resources"]["requests"]
        assert {"cpu", "memory"} <= requests.keys(), name
        gpus = container["resources"].get("limits", {}).get("nvidia.com/gpu")
        assert (gpus == 1) == (config.device == "cuda"), f"{name}: GPU limit and device disagree"
        # Headless, so DNS gives clients every pod and gRPC balances over them.
        assert service["spec"]["clusterIP"] == "None"
        (grpc_port,) = [port for port in service["spec"]["ports"] if port["name"] == "grpc"]
        assert grpc_port["port"] == config.port and grpc_port["targetPort"] == "grpc"
    assert devices == {"cpu", "cuda"}
    # The services the probes ask for are ones the real server reports SERVING.
    for name in sorted(probed):
        assert _health(live_server.target, name) == "SERVING", f"health service {name!r}"


def test_k8s_threads_fit_the_cpu_they_request():
    """A pod sees the node's cores, so the thread counts must follow its CPU request: on CPU the
    torch threads and the encoder threads together, on a GPU the encoder threads alone."""
    for overlay in OVERLAYS:
        deployment = only(kustomize(overlay), "Deployment")
        container = server_container(deployment)
        config = assert_server_settings(k8s_env(container), overlay.name)
        cores = float(str(container["resources"]["requests"]["cpu"]).removesuffix("m")) / \
            (1000 if str(container["resources"]["requests"]["cpu"]).endswith("m") else 1)
        if config.device == "cpu":
            # 0 would size torch from the node's cores, not the pod's.
            assert config.torch_threads > 0, overlay.name
            assert config.torch_threads + config.encode_threads <= cores, \
                f"{overlay.name}: {config.torch_threads} torch + {config.encode_threads} encoder " \
                f"threads on {cores:g} requested cores"
        else:
            assert config.encode_threads == cores, overlay.name


# --- rolling and draining ----------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda path: path.name)
def test_k8s_prestop_and_grace_fit_the_termination_grace(overlay):
    """The kubelet counts terminationGracePeriodSeconds from the preStop hook on: the hook, then
    the server's own grace for calls in flight, then its exit, all before the SIGKILL."""
    deployment = only(kustomize(overlay), "Deployment")
    pod, container = deployment["spec"]["template"]["spec"], server_container(deployment)
    config = assert_server_settings(k8s_env(container), overlay.name)
    hold = prestop_seconds(container)
    # CoreDNS answers for 5 s (its TTL) and kube-proxy needs a moment to drop the endpoint.
    assert hold >= 5, f"{overlay.name}: preStop {hold:g} s is shorter than DNS' 5 s TTL"
    needed = hold + config.grace_s + EXIT_MARGIN_S
    assert pod["terminationGracePeriodSeconds"] >= needed, \
        f"{overlay.name}: preStop {hold:g} s + grace {config.grace_s:g} s + {EXIT_MARGIN_S} s " \
        f"for the exit > terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']}"


def test_k8s_rollouts_and_disruptions_keep_pods_serving():
    deployments = {}
    for overlay in OVERLAYS:
        docs = kustomize(overlay)
        deployment, budget = only(docs, "Deployment"), only(docs, "PodDisruptionBudget")
        deployments[overlay.name] = deployment, budget
        # A new pod is ready (readiness: the renderer's health) before an old one goes.
        assert deployment["spec"]["strategy"] == {
            "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
        readiness = server_container(deployment)["readinessProbe"]["grpc"]
        assert readiness["service"] == "heatmap.v1.HeatmapRenderer", overlay.name
        # Evictions one pod at a time, and the budget covers exactly this Deployment's pods.
        assert budget["apiVersion"] == "policy/v1"
        assert budget["spec"] == {"maxUnavailable": 1,
                                  "selector": deployment["spec"]["selector"]}, overlay.name
        assert budget["metadata"]["name"] == deployment["metadata"]["name"]
        assert _selects(budget["spec"]["selector"], _pod_labels(deployment))
    # Two pods serve while one is evicted or replaced, wherever there is more than one.
    hpa = only(kustomize(K8S / "overlays" / "autoscale"), "HorizontalPodAutoscaler")
    assert deployments["cpu"][0]["spec"]["replicas"] - 1 >= 2
    assert hpa["spec"]["minReplicas"] - 1 >= 2
    # The cpu budget does not count the gpu pods, nor the gpu one the cpu pods.
    assert not _selects(deployments["cpu"][1]["spec"]["selector"],
                        _pod_labels(deployments["gpu"][0]))
    assert not _selects(deployments["gpu"][1]["spec"]["selector"],
                        _pod_labels(deployments["cpu"][0]))


# --- security ----------------------------------------------------------------------------------

def test_k8s_containers_run_read_only_and_unprivileged():
    uid = int(one(final_stage(), "USER").value[0].split(":")[0])
    for overlay in OVERLAYS:
        pod = only(kustomize(overlay), "Deployment")["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False, "the server never calls the API"
        volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
        containers = [*pod.get("initContainers", []), *pod["containers"]]
        assert containers
        for container in containers:
            where = f"{overlay.name} {container['name']}"
            context = {**pod["securityContext"], **container.get("securityContext", {})}
            assert context["runAsNonRoot"] is True and context["runAsUser"] == uid, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context.get("privileged", False) is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
            # Whatever is writable is an emptyDir with a bound, /tmp at least.
            mounts = {mount["mountPath"]: volumes[mount["name"]]
                      for mount in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{where}: no writable /tmp"
            for path, volume in mounts.items():
                assert volume.keys() == {"name", "emptyDir"}, f"{where}: {path} is not emptyDir"
                assert "sizeLimit" in volume["emptyDir"], f"{where}: {path} has no bound"


# --- autoscaling -------------------------------------------------------------------------------

def test_k8s_autoscaler_targets_the_deployment():
    docs = kustomize(K8S / "overlays" / "autoscale")
    deployment, hpa = only(docs, "Deployment"), only(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": deployment["apiVersion"],
                                             "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    target = metric["resource"]["target"]
    assert target["type"] == "Utilization" and 0 < target["averageUtilization"] <= 100
    # Utilization is a share of the request, so the pods must request CPU.
    assert "cpu" in server_container(deployment)["resources"]["requests"]
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    # Down one pod at a time: each one that goes drains, its clients move to the others.
    assert all(policy == {**policy, "type": "Pods", "value": 1}
               for policy in hpa["spec"]["behavior"]["scaleDown"]["policies"])
    # The autoscaler owns the count; otherwise the cpu overlay's Deployment as it is.
    assert "replicas" not in deployment["spec"], "every apply would reset the autoscaler's count"
    cpu = only(kustomize(K8S / "overlays" / "cpu"), "Deployment")
    del cpu["spec"]["replicas"]
    assert deployment == cpu
    assert only(docs, "PodDisruptionBudget") == only(kustomize(K8S / "overlays" / "cpu"),
                                                     "PodDisruptionBudget")


def test_k8s_keda_alternative_scales_on_the_server_queue(tmp_path):
    overlay = K8S / "overlays" / "autoscale"
    scaled = yaml.safe_load((overlay / "keda-scaledobject.yaml").read_text())
    assert scaled["apiVersion"] == "keda.sh/v1alpha1" and scaled["kind"] == "ScaledObject"
    deployment = only(kustomize(overlay), "Deployment")
    hpa = only(kustomize(overlay), "HorizontalPodAutoscaler")
    assert scaled["spec"]["scaleTargetRef"] == hpa["spec"]["scaleTargetRef"]
    assert scaled["spec"]["minReplicaCount"] == hpa["spec"]["minReplicas"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus" and float(trigger["metadata"]["threshold"]) > 0
    query = trigger["metadata"]["query"]
    # The metrics it asks for are gauges the server really exports.
    gauges = {family.name for family in Metrics().registry.collect() if family.type == "gauge"}
    asked = set(re.findall(r"\bheatmap_\w+", query))
    assert "heatmap_queue_depth" in asked and asked <= gauges, asked - gauges
    # Its pod pattern (PromQL anchors it) takes this Deployment's pods, not the gpu ones.
    pattern = re.search(r'pod=~"([^"]+)"', query)[1]
    gpu = only(kustomize(K8S / "overlays" / "gpu"), "Deployment")["metadata"]["name"]
    assert re.fullmatch(pattern, f"{deployment['metadata']['name']}-6b7f9c5d4-x2kq7")
    assert not re.fullmatch(pattern, f"{gpu}-6b7f9c5d4-x2kq7")

    # In place of hpa.yaml, as its kustomization says: KEDA's object and no autoscaler of ours.
    def swap(kustomization: dict) -> None:
        kustomization["resources"] = ["keda-scaledobject.yaml" if name == "hpa.yaml" else name
                                      for name in kustomization["resources"]]
    docs = _edited(tmp_path, "autoscale", swap)
    assert only(docs, "ScaledObject")["spec"] == scaled["spec"]
    assert not [doc for doc in docs if doc["kind"] == "HorizontalPodAutoscaler"]
    assert "replicas" not in only(docs, "Deployment")["spec"]


# --- the NetworkPolicy example -----------------------------------------------------------------

def _admits(policy: dict, namespace: str, labels: dict[str, str], port: str) -> bool:
    """Whether ``policy`` (in namespace "serving") lets a pod in ``namespace`` with ``labels`` reach
    the named ``port``; each namespace is labelled with its name, as Kubernetes labels them."""
    namespace_labels = {"kubernetes.io/metadata.name": namespace}
    for rule in policy["spec"].get("ingress", []):
        if rule.get("ports") and port not in [entry["port"] for entry in rule["ports"]]:
            continue
        for peer in rule.get("from", []):
            if "ipBlock" in peer:
                continue
            in_namespace = _selects(peer["namespaceSelector"], namespace_labels) \
                if "namespaceSelector" in peer else namespace == "serving"
            if in_namespace and _selects(peer.get("podSelector", {}), labels):
                return True
    return False


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_k8s_network_policy_admits_labelled_clients_and_monitoring(tmp_path, overlay):
    docs = _with_network_policy(tmp_path, overlay)
    deployment, policy = only(docs, "Deployment"), only(docs, "NetworkPolicy")
    assert policy["metadata"]["name"] == deployment["metadata"]["name"]
    # It covers this variant's servers and nothing else.
    assert policy["spec"]["podSelector"] == deployment["spec"]["selector"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    ports = {port["name"] for port in server_container(deployment)["ports"]}
    named = {entry["port"] for rule in policy["spec"]["ingress"] for entry in rule["ports"]}
    assert named == ports == {"grpc", "metrics"}
    client = {"heatmap-client": "true", "job-name": "train-pose"}
    cases = [
        # namespace, labels, port, admitted
        ("training", client, "grpc", True),
        ("serving", client, "grpc", True),
        ("training", client, "metrics", False),
        ("training", {"job-name": "train-pose"}, "grpc", False),
        ("serving", {"heatmap-client": "false"}, "grpc", False),
        ("serving", _pod_labels(deployment), "grpc", False),
        ("monitoring", {"app.kubernetes.io/name": "prometheus"}, "metrics", True),
        ("monitoring", {"app.kubernetes.io/name": "prometheus"}, "grpc", False),
        ("default", {"app.kubernetes.io/name": "prometheus"}, "metrics", False),
    ]
    for namespace, labels, port, admitted in cases:
        assert _admits(policy, namespace, labels, port) is admitted, (namespace, labels, port)
