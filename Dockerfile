# One Cairn node. Build: docker build -t cairn . ; run: see docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /opt/cairn

COPY pyproject.toml README.md ./
COPY protos ./protos
COPY client ./client
COPY server ./server
RUN pip install ".[server]" && useradd --system --uid 10001 --home /var/lib/cairn cairn \
    && mkdir -p /var/lib/cairn /etc/cairn && chown cairn /var/lib/cairn

USER cairn
VOLUME ["/var/lib/cairn"]
# gRPC (clients and forwarding) and Raft (peers only).
EXPOSE 50051 7100
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=5 \
    CMD ["python", "-c", "import grpc,sys; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g; sys.exit(0 if g.HealthStub(grpc.insecure_channel('127.0.0.1:50051')).Check(h.HealthCheckRequest(), timeout=2).status == h.HealthCheckResponse.SERVING else 1)"]
ENTRYPOINT ["cairn", "node"]
CMD ["--config", "/etc/cairn/node.yaml"]
