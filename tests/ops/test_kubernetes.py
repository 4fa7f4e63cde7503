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


def secret_of_path(pod_spec: dict, container: dict, path: str) -> str:
    """The name of the Secret whose whole-folder mount holds `path` (fails if none does)."""
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    holding = [
        mount
        for mount in container["volumeMounts"]
        if path.startswith(mount["mountPath"].rstrip("/") + "/")
    ]
    assert holding, f"{path} is on no mount"
    mount = max(holding, key=lambda m: len(m["mountPath"]))  # the innermost mount wins
    assert "subPath" not in mount, "a subPath mount never sees the Secret change"
    assert mount.get("readOnly") is True
    return str(volumes[mount["name"]]["secret"]["secretName"])


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
    health_port = int(arg_value(args, "--health-address").rpartition(":")[2])
    metrics_port = int(arg_value(args, "--metrics-address").rpartition(":")[2])
    assert arg_value(args, "--address").startswith("0.0.0.0:")
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"grpc": grpc_port, "health": health_port, "metrics": metrics_port}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        # Kubernetes native gRPC probes (which cannot speak TLS) on the plain-text health port.
        assert container[probe]["grpc"]["port"] == health_port, probe
        assert "service" not in container[probe]["grpc"], probe
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(metrics_port)
    assert annotations["prometheus.io/path"] == "/metrics"
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()


def test_serving_takes_tokens_and_mutual_tls_from_secrets() -> None:
    pod = manifest_objects()[("Deployment", "quill-serving")]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    # Listening beyond loopback is allowed only with TLS and operator tokens, never --insecure.
    assert "--insecure" not in args
    assert secret_of_path(pod, container, arg_value(args, "--token-file")) == "quill-tokens"
    for flag in ("--tls-cert", "--tls-key", "--tls-client-ca"):
        assert secret_of_path(pod, container, arg_value(args, flag)) == "quill-serving-tls"


def test_serving_service_is_headless() -> None:
    objects = manifest_objects()
    service = objects[("Service", "quill-serving")]
    assert service["spec"]["clusterIP"] == "None"
    pod_labels = objects[("Deployment", "quill-serving")]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert {port["name"] for port in service["spec"]["ports"]} == {"grpc", "health", "metrics"}


def envoy_config() -> dict:
    config_map = manifest_objects()[("ConfigMap", "quill-envoy")]
    return yaml.safe_load(config_map["data"]["envoy.yaml"])


def envoy_listener(name: str) -> dict:
    (listener,) = [
        item for item in envoy_config()["static_resources"]["listeners"] if item["name"] == name
    ]
    return listener


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
    (chain,) = envoy_listener("grpc")["filter_chains"]
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
    (mount,) = [m for m in container["volumeMounts"] if "configMap" in volumes[m["name"]]]
    assert volumes[mount["name"]]["configMap"]["name"] == "quill-envoy"
    assert container["args"][:2] == ["-c", f"{mount['mountPath']}/envoy.yaml"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for name in ("grpc", "ready"):
        listen_port = envoy_listener(name)["address"]["socket_address"]["port_value"]
        assert ports[name] == listen_port, name
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/ready", "port": "ready"}
    service = objects[("Service", "quill-envoy")]
    assert service["spec"]["selector"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items()
    )


def test_envoy_terminates_tls_and_speaks_mutual_tls_to_the_pods() -> None:
    objects = manifest_objects()
    pod = objects[("Deployment", "quill-envoy")]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    config = envoy_config()
    # The admin interface never listens beyond loopback.
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    exposed = {p["name"] for p in container["ports"]}
    assert "admin" not in exposed
    (chain,) = envoy_listener("grpc")["filter_chains"]
    downstream = chain["transport_socket"]["typed_config"]
    assert downstream["@type"].endswith("tls.v3.DownstreamTlsContext")
    (served,) = downstream["common_tls_context"]["tls_certificates"]
    for key in ("certificate_chain", "private_key"):
        assert secret_of_path(pod, container, served[key]["filename"]) == "quill-envoy-tls"
    (cluster,) = config["static_resources"]["clusters"]
    upstream = cluster["transport_socket"]["typed_config"]
    assert upstream["@type"].endswith("tls.v3.UpstreamTlsContext")
    (endpoint,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    host = endpoint["endpoint"]["address"]["socket_address"]["address"]
    assert upstream["sni"] == host
    context = upstream["common_tls_context"]
    (client,) = context["tls_certificates"]
    files = [
        client["certificate_chain"]["filename"],
        client["private_key"]["filename"],
        context["validation_context"]["trusted_ca"]["filename"],
    ]
    for path in files:
        assert secret_of_path(pod, container, path) == "quill-envoy-upstream-tls"
    (san,) = context["validation_context"]["match_typed_subject_alt_names"]
    assert san["matcher"]["exact"] == host
    service = objects[("Service", "quill-envoy")]
    assert [p["port"] for p in service["spec"]["ports"]] == [443]


def test_only_envoy_reaches_the_serving_grpc_port() -> None:
    objects = manifest_objects()
    policy = objects[("NetworkPolicy", "quill-serving")]
    serving = objects[("Deployment", "quill-serving")]["spec"]["template"]
    envoy = objects[("Deployment", "quill-envoy")]["spec"]["template"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= (
        serving["metadata"]["labels"].items()
    )
    ports = {p["name"]: p["containerPort"] for p in serving["spec"]["containers"][0]["ports"]}
    rules_for_grpc = [
        rule
        for rule in policy["spec"]["ingress"]
        if ports["grpc"] in {p["port"] for p in rule["ports"]}
    ]
    (rule,) = rules_for_grpc
    (source,) = rule["from"]
    assert source["podSelector"]["matchLabels"].items() <= envoy["metadata"]["labels"].items()
    open_ports = {
        p["port"] for r in policy["spec"]["ingress"] if "from" not in r for p in r["ports"]
    }
    assert open_ports == {ports["health"], ports["metrics"]}


def test_compose_file() -> None:
    (compose,) = documents(ROOT / "ops" / "compose.yaml")
    assert set(compose["services"]) == {"serving", "prometheus", "grafana"}
    serving = compose["services"]["serving"]
    command = serving["command"]
    assert arg_value(command, "--metrics-address") == "127.0.0.1:9400"
    # One host: serving on loopback, its tokens from a compose secret.
    assert arg_value(command, "--address").startswith("127.0.0.1:")
    (secret,) = serving["secrets"]
    assert arg_value(command, "--token-file") == f"/run/secrets/{secret}"
    assert compose["secrets"][secret]["file"] == "./secrets/tokens"
    for service in compose["services"].values():
        assert service["network_mode"] == "host"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / "ops" / source).exists(), volume
