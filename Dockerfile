# syntax=docker/dockerfile:1
# One image for the gateway (the default), auth-core and the migrations: docs/deployment.md#container.
#   docker build -t auth-gateway .
#   docker run auth-gateway                                   # gateway on 0.0.0.0:8000
#   docker run auth-gateway node dist/auth-core/server.js     # auth-core
#   docker run auth-gateway node dist/gateway/cli/migrate.js  # migrations, once per release
ARG NODE_MAJOR=24

FROM node:${NODE_MAJOR}-bookworm-slim AS build
WORKDIR /app
# The manifests first: the dependency layer is rebuilt only when they change. No scripts yet:
# `prepare` builds the client workspace, whose sources are not copied at this point.
COPY package.json package-lock.json ./
COPY shared/client/package.json shared/client/
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY gateway gateway
COPY auth-core auth-core
COPY shared shared
# dist/: the services, the CLIs and the client sources the services import (shared/client/src).
# The client package's own build (shared/client/dist) is for browsers; no server code loads it.
RUN npm run build

FROM node:${NODE_MAJOR}-bookworm-slim AS runtime
# tini as PID 1: it forwards SIGTERM to node (which drains, then exits 0) and reaps zombies.
RUN apt-get update \
  && apt-get install -y --no-install-recommends tini \
  && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production
# The gateway listens on every interface of its container; auth-core keeps its loopback default
# (set AUTH_CORE_HOST=0.0.0.0 where the gateway runs in another container, as compose does).
ENV HOST=0.0.0.0 PORT=8000
WORKDIR /app
COPY package.json package-lock.json ./
COPY shared/client/package.json shared/client/
# Production dependencies only; `prepare` would need the dev dependency tsc.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
  && npm cache clean --force
COPY --from=build /app/dist dist
USER node
EXPOSE 8000
# `GET /health` of whichever service this container runs (gateway/cli/healthcheck.ts).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "dist/gateway/cli/healthcheck.js"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/gateway/server.js"]
