# runcd in a container. It drives the host's kernel through runc, so it runs privileged, in the host's cgroup
# namespace with the cgroup hierarchy mounted, and keeps its socket and state on the host:
#
#   podman build --format docker -t runcd .     (or docker build -t runcd .; Podman's default OCI format drops
#                                                 the HEALTHCHECK)
#   podman run -d --name runcd --privileged --cgroupns=host \
#     -v /sys/fs/cgroup:/sys/fs/cgroup -v /run/runcd:/run/runcd -v /var/lib/runcd:/var/lib/runcd runcd
#
# (docker run takes the same flags.) Bundles go under /var/lib/runcd/bundles on the host; drive it from the host
# with `runcctl --host unix:///run/runcd/runcd.sock` or curl on the socket. Unlike the systemd install, stopping
# this container stops the containers it runs: they live in its pid namespace. scripts/prove-image.sh builds and
# exercises this file without any registry.
#
# Node 20 comes from the official node image (Debian bookworm's own nodejs is 18, too old for runcd); only its
# node binary is copied into the runtime stage.
ARG NODE_IMAGE=docker.io/library/node:20-bookworm-slim
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${NODE_IMAGE} AS build
# better-sqlite3 compiles its addon; npm_config_nodedir points node-gyp at the image's own headers, so the build
# needs the npm registry and Debian's mirror, and nothing else.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 make g++ \
    && rm -rf /var/lib/apt/lists/*
ENV npm_config_nodedir=/usr/local \
    npm_config_build_from_source=true
USER node
WORKDIR /home/node/runcd
COPY --chown=node package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY --chown=node tsconfig.json ./
COPY --chown=node openapi ./openapi
COPY --chown=node bin ./bin
COPY --chown=node src ./src
COPY --chown=node routes ./routes
COPY --chown=node test ./test
COPY --chown=node bench ./bench
# The spawn helper is compiled by the build (g++ above brings gcc) into dist/native.
COPY --chown=node scripts/build-spawn-helper.js ./scripts/
COPY --chown=node native ./native
# The build generates runcctl's API types from openapi/openapi.json and compiles everything; only the daemon and
# the CLI ship.
RUN npm run build \
    && rm -rf dist/test dist/bench \
    && npm prune --omit=dev --no-audit --no-fund

FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends runc conmon tini skopeo umoci ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/node /usr/local/bin/node
WORKDIR /opt/runcd
COPY --from=build /home/node/runcd/package.json ./
COPY --from=build /home/node/runcd/node_modules ./node_modules
COPY --from=build /home/node/runcd/dist ./dist
COPY --from=build /home/node/runcd/bin ./bin
RUN ln -s /opt/runcd/bin/runcd.js /usr/local/bin/runcd \
    && ln -s /opt/runcd/bin/runcctl.js /usr/local/bin/runcctl \
    && node --version && runcd --version && runcctl --version
VOLUME ["/run/runcd", "/var/lib/runcd"]
# Ready, not merely alive: the store takes a write and runc and conmon answer.
HEALTHCHECK --interval=30s --timeout=10s --start-period=15s --retries=3 \
    CMD ["node", "-e", "require('http').get({socketPath:'/run/runcd/runcd.sock',path:'/readyz'},r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))"]
# tini reaps what runcd's children leave behind and forwards SIGTERM, which starts runcd's graceful shutdown.
ENTRYPOINT ["/usr/bin/tini", "--", "runcd"]
