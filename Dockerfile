# The runt control plane image. Build it with `pnpm image` (tag runt/control-plane:dev); see
# docs/deploy.md. Multi-stage: the workspace is built with pnpm, and the image ships only the
# control plane's production dependencies and dist/ (`pnpm deploy --prod`).
#
# NODE_BASE: any image with Node >= 20.19 on glibc and a POSIX shell; CI passes the base that
# scripts/build-node-base.sh makes locally (no registry needed).
ARG NODE_BASE=node:20-bookworm-slim

# --- build ----------------------------------------------------------------------------------
FROM ${NODE_BASE} AS build
# Lets scripts/build-image.sh prune the untagged build-stage images of earlier builds.
LABEL org.runt.image.stage=build
WORKDIR /src
COPY . .
# PREBUILT: a directory in the build context that already holds
# `pnpm --filter @runt/control-plane deploy --prod --legacy <dir>` of this same source, made on
# the host by scripts/build-image.sh when build containers cannot reach the npm registry.
# Empty: install and build here (needs the registry).
ARG PREBUILT=
ARG PNPM_VERSION=10.34.9
RUN set -eu; \
    if [ -n "$PREBUILT" ]; then \
      test -f "$PREBUILT/dist/bin.js" && test -d "$PREBUILT/node_modules"; \
      cp -a "$PREBUILT" /out; \
    else \
      npm install -g "pnpm@$PNPM_VERSION"; \
      pnpm install --frozen-lockfile; \
      pnpm --filter '@runt/control-plane...' build; \
      pnpm --filter @runt/control-plane deploy --prod --legacy /out; \
    fi

# --- runtime --------------------------------------------------------------------------------
FROM ${NODE_BASE}
LABEL org.runt.image=control-plane \
      org.opencontainers.image.title="runt control plane"
ENV NODE_ENV=production \
    RUNT_HOST=0.0.0.0 \
    RUNT_PORT=8787 \
    RUNT_DATA_DIR=/data
# A fixed non-root user; /data (embedded PGlite, admin token file) belongs to it. A fresh named
# volume mounted on /data takes this ownership; a bind mount must be writable by uid 10001.
RUN set -eu; \
    echo 'runt:x:10001:10001:runt:/data:/sbin/nologin' >>/etc/passwd; \
    echo 'runt:x:10001:' >>/etc/group; \
    mkdir -p /data && chown 10001:10001 /data && chmod 0700 /data
COPY --from=build /out /app
WORKDIR /app
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8787
# Uses node itself (the base may have neither curl nor wget).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.RUNT_PORT||8787)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# PID 1 is node: bin.js handles SIGTERM/SIGINT (closes links, the server and the database, then
# exits 0) and starts no child processes, so there is nothing to reap.
ENTRYPOINT ["node", "/app/dist/bin.js"]
