# syntax=docker/dockerfile:1
# idnode: a secondary node of the Industrial Internet identifier resolution system.
#   docker build -t idnode .
#   docker run -p 8000:8000 -p 2641:2641 -p 2641:2641/udp -p 5353:5353/udp -v idnode:/var/lib/idnode idnode
# The node's keys and its SQLite database (the default) live in /var/lib/idnode
# (IDNODE_DATA_DIR): keep that volume, and back it up (docs/operations.md). With PostgreSQL, set
# IDNODE_DATABASE_URL and run `idnode migrate` once (docker-compose.yml does).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY idnode/ idnode/
COPY registry/ registry/
COPY resolver/ resolver/
COPY sync/ sync/
COPY metrics/ metrics/
COPY scripts/install-runtime.sh scripts/
RUN sh scripts/install-runtime.sh /opt/idnode .

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 idnode \
    && useradd --system --uid 10001 --gid idnode --home-dir /var/lib/idnode \
        --shell /usr/sbin/nologin idnode \
    && install -d -o idnode -g idnode -m 0700 /var/lib/idnode
COPY --from=build /opt/idnode /opt/idnode
ENV PATH=/opt/idnode/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    IDNODE_HTTP=0.0.0.0:8000 \
    IDNODE_HANDLE=0.0.0.0:2641 \
    IDNODE_DNS=0.0.0.0:5353 \
    IDNODE_DATA_DIR=/var/lib/idnode \
    IDNODE_LOG_FORMAT=json
USER idnode
WORKDIR /var/lib/idnode
VOLUME ["/var/lib/idnode"]
EXPOSE 8000/tcp 2641/tcp 2641/udp 5353/tcp 5353/udp
# `idnode health` asks the configured HTTP address (IDNODE_HTTP, TLS if set) for /healthz.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["idnode", "health"]
ENTRYPOINT ["idnode"]
CMD ["serve", "--migrate"]
