"""`python -m cairn_server.healthcheck CONFIG`: exit 0 when the node of CONFIG answers SERVING (the Dockerfile's probe).

It reads the node's own configuration so that it speaks whatever the node serves: plaintext, or TLS with the
node's CA and, for `client_auth: require`, the node's own certificate as the client certificate. It connects
to 127.0.0.1 on the configured gRPC port and checks the certificate against the host the node advertises, so
a certificate without a SAN for 127.0.0.1 still passes.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .config import ConfigError, load_config


def check(config_path: str, timeout: float = 2.0) -> bool:
    config = load_config(config_path)
    port = config.cluster.grpc_address.rpartition(":")[2]
    target = f"127.0.0.1:{port}"
    if config.tls is None:
        channel = grpc.insecure_channel(target)
    else:
        t = config.tls
        credentials = grpc.ssl_channel_credentials(
            Path(t.ca).read_bytes(), Path(t.key).read_bytes(), Path(t.cert).read_bytes()
        )
        host = config.cluster.advertise_grpc_address.rpartition(":")[0]
        channel = grpc.secure_channel(target, credentials, options=[("grpc.ssl_target_name_override", host)])
    with channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m cairn_server.healthcheck CONFIG", file=sys.stderr)
        return 2
    try:
        return 0 if check(args[0]) else 1
    except (ConfigError, OSError, grpc.RpcError) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
