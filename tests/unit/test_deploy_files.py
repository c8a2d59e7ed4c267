"""docker-compose.yml and the Dockerfile, checked by parsing (no Docker engine here)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import yaml
from cryptography import x509

from cairn_server import certs
from cairn_server.config import parse_config

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def interpolate(text: str) -> str:
    """What docker compose does with ${VAR:?message} when VAR is set."""
    return re.sub(r"\$\{CAIRN_CLUSTER_SECRET:\?[^}]*\}", "s" * 48, text)


def test_compose_runs_three_nodes_that_form_one_cluster(tmp_path: Path) -> None:
    # The compose header's recipe makes ./tls; the configs name it as mounted, /etc/cairn/tls.
    assert certs.main([str(tmp_path), "node1", "node2", "node3"]) == 0
    doc = compose()
    nodes = {name: svc for name, svc in doc["services"].items() if name.startswith("node")}
    assert sorted(nodes) == ["node1", "node2", "node3"]
    host_ports = [svc["ports"][0].split(":")[0] for svc in nodes.values()]
    assert len(set(host_ports)) == 3
    configs = {}
    for name, svc in nodes.items():
        assert svc["build"] == "." and svc["configs"][0]["target"] == "/etc/cairn/node.yaml"
        assert any(v.endswith(":/var/lib/cairn") for v in svc["volumes"])
        assert "./tls:/etc/cairn/tls:ro" in svc["volumes"]
        source = svc["configs"][0]["source"]
        content = interpolate(doc["configs"][source]["content"]).replace("/etc/cairn/tls/", f"{tmp_path}/")
        configs[name] = parse_config(yaml.safe_load(content))
    for name, cfg in configs.items():
        assert cfg.cluster.node_id == name and cfg.cluster.secret == "s" * 48
        assert cfg.state_storage.connection == "/var/lib/cairn"
        assert cfg.tls is not None and cfg.tls.client_auth == "require"
        assert (cfg.tls.cert, cfg.tls.key, cfg.tls.ca) == (
            f"{tmp_path}/{name}.pem",
            f"{tmp_path}/{name}-key.pem",
            f"{tmp_path}/ca.pem",
        )
        # Peers dial node2:50051 and clients localhost:5005N: the node's certificate must name both.
        cert = x509.load_pem_x509_certificate(Path(cfg.tls.cert).read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert cfg.cluster.advertise_grpc_address.rpartition(":")[0] in san.get_values_for_type(x509.DNSName)
        assert "localhost" in san.get_values_for_type(x509.DNSName)
        assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
        peers = {(p.node_id, p.grpc_address, p.raft_address) for p in cfg.cluster.peers}
        others = {
            (o.cluster.node_id, o.cluster.advertise_grpc_address, o.cluster.raft_address)
            for n, o in configs.items()
            if n != name
        }
        assert peers == others
    assert set(doc["volumes"]) == {"node1-data", "node2-data", "node3-data"}


def test_compose_refuses_to_start_without_a_secret() -> None:
    for cfg in compose()["configs"].values():
        assert "${CAIRN_CLUSTER_SECRET:?" in cfg["content"]


def test_dockerfile_installs_the_server_and_runs_a_node() -> None:
    lines = [
        ln.strip() for ln in (ROOT / "Dockerfile").read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0].startswith("FROM python:3.11")
    text = "\n".join(lines)
    assert 'pip install ".[server]"' in text
    for path in ("pyproject.toml", "protos", "client", "server"):
        assert re.search(rf"^COPY .*{path}", text, re.M), path
    assert 'ENTRYPOINT ["cairn", "node"]' in text and "EXPOSE 50051 7100" in text
    # The probe must speak TLS when the node does (compose turns it on): it reads the node's config.
    assert '"cairn_server.healthcheck", "/etc/cairn/node.yaml"' in text
    assert "USER cairn" in text and "HEALTHCHECK" in text
