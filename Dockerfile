# syntax=docker/dockerfile:1
# Kaizen Studio: one image for the control plane (API + web studio), the authz sidecar and the
# gateway; the command picks the runtime (`control-plane`, `sidecar`, `gateway`, `db upgrade`,
# `backup`, `restore`). Multi-stage: the studio is built with Node, the wheel with pip, and the
# final stage holds the installed wheel only, running as an unprivileged user.
#   docker build -t kaizen-studio .
#   docker run --rm -p 8000:8000 -e KAIZEN_CP_HOST=0.0.0.0 kaizen-studio control-plane

# -- 1: the web studio (control_plane/ui -> control_plane/ui/dist) ---------------------------
FROM node:20-bookworm-slim AS ui
WORKDIR /src/control_plane/ui
COPY control_plane/ui/package.json control_plane/ui/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY control_plane/ui/ ./
RUN npm run build

# -- 2: the wheel, with the built studio and the Envoy template inside -----------------------
FROM python:3.11-slim-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY control_plane/ control_plane/
COPY policy/ policy/
COPY authz_sidecar/ authz_sidecar/
COPY gateways/ gateways/
COPY kaizen_studio/ kaizen_studio/
# kaizen_studio/data/envoy.yaml links to deploy/envoy/envoy.yaml: the link is followed here.
COPY deploy/envoy/envoy.yaml deploy/envoy/envoy.yaml
COPY --from=ui /src/control_plane/ui/dist/ control_plane/ui/dist/
# Dependencies at requirements.lock's exact versions (the lock also holds the dev extra,
# which the image does not install; its hashes are for `make`'s --require-hashes install).
RUN sed -e '/--hash=/d' -e 's/ \\$//' -e '/^ *#/d' requirements.lock > /tmp/constraints.txt \
 && pip wheel --no-deps --wheel-dir /wheels . \
 && pip wheel --constraint /tmp/constraints.txt --wheel-dir /wheels "$(ls /wheels/kaizen_studio-*.whl)"

# -- 3: runtime ------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm
# pg_dump/pg_restore for `kaizen-studio backup` / `restore` (PostgreSQL 15 client).
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client-15 \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 kaizen \
 && useradd --system --uid 10001 --gid kaizen --home-dir /var/lib/kaizen --shell /usr/sbin/nologin kaizen \
 && install -d -o kaizen -g kaizen -m 0700 /var/lib/kaizen
COPY --from=wheel /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels kaizen-studio && rm -rf /wheels
ENV KAIZEN_HOME=/var/lib/kaizen \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /var/lib/kaizen
EXPOSE 8000 9191 9192 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
  CMD python -c "import os,sys,urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('KAIZEN_CP_PORT', '8000'), timeout=2).status == 200 else 1)"
ENTRYPOINT ["kaizen-studio"]
CMD ["control-plane", "--host", "0.0.0.0"]
