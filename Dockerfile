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
# The probe reads the node's config, so it speaks TLS (with the node's own certificate) when the node does.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=5 \
    CMD ["python", "-m", "cairn_server.healthcheck", "/etc/cairn/node.yaml"]
ENTRYPOINT ["cairn", "node"]
CMD ["--config", "/etc/cairn/node.yaml"]
