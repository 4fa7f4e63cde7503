"""ops/kubernetes and ops/compose.yaml: the files parse and agree with each other and with serving.

No cluster, Envoy or docker runs here: these are static checks of the manifests only.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from quill.grpc_metadata import ROUTING_HEADERS

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "ops" / "kubernetes"


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def manifest_objects() -> dict[tuple[str, str], dict]:
    objects = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in documents(path):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in objects, f"{key} defined twice"
            objects[key] = doc
    return objects


def arg_value(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


@pytest.mark.parametrize("path", sorted(KUBERNETES.glob("*.yaml")), ids=lambda p: p.name)
def test_manifests_parse(path: Path) -> None:
    docs = documents(path)
    assert docs
    for doc in docs:
        assert doc["apiVersion"] and doc["kind"]
        if doc["kind"] != "Kustomization":
            assert doc["metadata"]["name"]


def test_kustomization_lists_every_manifest() -> None:
    (kustomization,) = documents(KUBERNETES / "kustomization.yaml")
    assert kustomization["namespace"] == "quill"
    listed = set(kustomization["resources"])
    present = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


def test_serving_deployment() -> None:
    objects = manifest_objects()
    deployment = objects[("Deployment", "quill-serving")]
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    args = container["args"]
    assert args[0] == "serve"
    assert arg_value(args, "--model")
    assert "--engine-arg" in args and "--gpu-memory-utilization" in args
    grpc_port = int(arg_value(args, "--address").rpartition(":")[2])
    metrics_port = int(arg_value(args, "--metrics-address").rpartition(":")[2])
    assert arg_value(args, "--address").startswith("0.0.0.0:")
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"grpc": grpc_port, "metrics": metrics_port}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        # Kubernetes native gRPC probes on the grpc.health.v1 service of the serving port.
        assert container[probe]["grpc"]["port"] == grpc_port, probe
        assert "service" not in container[probe]["grpc"], probe
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(metrics_port)
    assert annotations["prometheus.io/path"] == "/metrics"
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()


def test_serving_service_is_headless() -> None:
    objects = manifest_objects()
    service = objects[("Service", "quill-serving")]
    assert service["spec"]["clusterIP"] == "None"
    pod_labels = objects[("Deployment", "quill-serving")]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert {port["name"] for port in service["spec"]["ports"]} == {"grpc", "metrics"}


def envoy_config() -> dict:
    config_map = manifest_objects()[("ConfigMap", "quill-envoy")]
    return yaml.safe_load(config_map["data"]["envoy.yaml"])


def test_envoy_balances_grpc_with_ring_hash_on_the_workspace_header() -> None:
    config = envoy_config()
    (cluster,) = config["static_resources"]["clusters"]
    assert cluster["lb_policy"] == "RING_HASH"
    assert cluster["type"] == "STRICT_DNS"
    options = cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    assert "http2_protocol_options" in options["explicit_http_config"]  # gRPC is HTTP/2
    assert any("grpc_health_check" in check for check in cluster["health_checks"])
    (listener,) = config["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    (manager,) = chain["filters"]
    routes = manager["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    for route in routes:
        assert route["route"]["cluster"] == cluster["name"]
        headers = [policy["header"]["header_name"] for policy in route["route"]["hash_policy"]]
        assert headers == list(ROUTING_HEADERS)  # as ops/haproxy/haproxy.cfg hashes
        retry = route["route"]["retry_policy"]
        assert "connect-failure" in retry["retry_on"]  # as HAProxy's redispatch
        assert retry["retry_host_predicate"][0]["name"].endswith("previous_hosts")
    (check,) = cluster["health_checks"]
    assert check["interval"] == "1s" and check["unhealthy_threshold"] == 2


def test_envoy_points_at_the_headless_service() -> None:
    objects = manifest_objects()
    (cluster,) = envoy_config()["static_resources"]["clusters"]
    (endpoint,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    address = endpoint["endpoint"]["address"]["socket_address"]
    (kustomization,) = documents(KUBERNETES / "kustomization.yaml")
    assert address["address"] == f"quill-serving.{kustomization['namespace']}.svc.cluster.local"
    serving_ports = {
        p["name"]: p["port"] for p in objects[("Service", "quill-serving")]["spec"]["ports"]
    }
    assert address["port_value"] == serving_ports["grpc"]


def test_envoy_deployment_mounts_its_config() -> None:
    objects = manifest_objects()
    deployment = objects[("Deployment", "quill-envoy")]
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    (mount,) = container["volumeMounts"]
    assert volumes[mount["name"]]["configMap"]["name"] == "quill-envoy"
    assert container["args"][:2] == ["-c", f"{mount['mountPath']}/envoy.yaml"]
    (listener,) = envoy_config()["static_resources"]["listeners"]
    listen_port = listener["address"]["socket_address"]["port_value"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["grpc"] == listen_port
    service = objects[("Service", "quill-envoy")]
    assert service["spec"]["selector"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items()
    )


def test_compose_file() -> None:
    (compose,) = documents(ROOT / "ops" / "compose.yaml")
    assert set(compose["services"]) == {"serving", "prometheus", "grafana"}
    command = compose["services"]["serving"]["command"]
    assert arg_value(command, "--metrics-address") == "127.0.0.1:9400"
    for service in compose["services"].values():
        assert service["network_mode"] == "host"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / "ops" / source).exists(), volume
