# runcd in a container. It drives the host's kernel through runc, so it must run privileged, with the cgroup
# hierarchy and its state directories from the host:
#   podman run -d --name runcd --privileged --pid=host --cgroupns=host \
#     -v /sys/fs/cgroup:/sys/fs/cgroup -v /run/runcd:/run/runcd -v /var/lib/runcd:/var/lib/runcd runcd
ARG BASE=debian:bookworm-slim

FROM ${BASE} AS build
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm python3 make g++ ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 1000 builder
USER builder
WORKDIR /home/builder/runcd
COPY --chown=builder package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY --chown=builder tsconfig.json ./
COPY --chown=builder src ./src
COPY --chown=builder routes ./routes
COPY --chown=builder test ./test
COPY --chown=builder bench ./bench
RUN npm run build && npm prune --omit=dev

FROM ${BASE}
RUN apt-get update && apt-get install -y --no-install-recommends nodejs runc conmon tini curl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/runcd
COPY --from=build /home/builder/runcd/package.json ./
COPY --from=build /home/builder/runcd/node_modules ./node_modules
COPY --from=build /home/builder/runcd/dist ./dist
COPY bin ./bin
VOLUME ["/run/runcd", "/var/lib/runcd"]
HEALTHCHECK --interval=30s --timeout=3s CMD curl -sf --unix-socket /run/runcd/runcd.sock http://localhost/healthz || exit 1
ENTRYPOINT ["/usr/bin/tini", "--", "node", "/opt/runcd/bin/runcd.js"]
