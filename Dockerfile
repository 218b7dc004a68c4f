# geno-bridge container: `docker run ... geno-bridge` runs the daemon (`bridge run`).
#
#   docker build -t geno-bridge .
#   docker run -d --name geno-bridge --stop-timeout 60 \
#     -v geno-bridge-state:/var/lib/geno-bridge \
#     -v /srv/geno-bridge/config.yaml:/etc/geno-bridge/config.yaml:ro \
#     -v /srv/geno-bridge/x-bearer-token:/run/secrets/x-bearer-token:ro \
#     geno-bridge
#   docker exec -it geno-bridge bridge link coop-a --x-username coop_a
#
# The config reads the token from the file (x.bearer_token_file: /run/secrets/x-bearer-token)
# and keeps the ledger on the volume (database: /var/lib/geno-bridge/ledger.db).
# --stop-timeout must exceed daemon.shutdown_grace (30 s): Docker's default is 10 s.
#
# The self-service pages run from the same image on the same volume (web.host: 0.0.0.0 in its config,
# the port published on loopback only, a reverse proxy with TLS in front; README "Docker"):
#   docker run -d --name geno-bridge-web -p 127.0.0.1:8350:8350 -v geno-bridge-state:/var/lib/geno-bridge \
#     -v /srv/geno-bridge/config.yaml:/etc/geno-bridge/config.yaml:ro -v /srv/geno-bridge/web-secret:/run/secrets/web-secret:ro \
#     --health-cmd 'python -c "import urllib.request as u; u.urlopen(\"http://127.0.0.1:8350/\")"' geno-bridge web

# ---- build: install the bridge and its dependencies into a self-contained venv
FROM python:3.12.8-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv

WORKDIR /src
COPY pyproject.toml README.md ./
COPY bridge ./bridge
RUN /opt/venv/bin/pip install --no-cache-dir .

# ---- runtime: the same slim base with only the venv, running as an unprivileged user
FROM python:3.12.8-slim-bookworm

LABEL org.opencontainers.image.title="geno-bridge" \
      org.opencontainers.image.description="Republish cooperatives' X posts on their Mastodon accounts, exactly once" \
      org.opencontainers.image.licenses="AGPL-3.0-or-later"

# A fixed uid/gid, so the state volume's ownership survives image upgrades.
RUN groupadd --system --gid 10001 geno-bridge \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/geno-bridge --no-create-home \
      --shell /usr/sbin/nologin geno-bridge \
 && mkdir -p /var/lib/geno-bridge /etc/geno-bridge \
 && chown 10001:10001 /var/lib/geno-bridge \
 && chmod 0700 /var/lib/geno-bridge

COPY --from=builder /opt/venv /opt/venv

ENV PATH="/opt/venv/bin:${PATH}" \
    BRIDGE_CONFIG=/etc/geno-bridge/config.yaml \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /var/lib/geno-bridge
USER 10001:10001

# The ledger (SQLite) and the daemon's heartbeat live here: keep it on a volume.
VOLUME ["/var/lib/geno-bridge"]

# `bridge web` (the self-service pages) listens here when its config says web.host: 0.0.0.0.
EXPOSE 8350

# Unhealthy when the daemon has had no successful cycle within three intervals.
HEALTHCHECK --interval=60s --timeout=15s --start-period=120s --retries=3 \
  CMD ["bridge", "status", "--check"]

ENTRYPOINT ["bridge"]
CMD ["run"]
