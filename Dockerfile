# Hecate as a small Alpine image: the single compiled binary (musl build), the example config,
# a non-root user.
#
#   docker build -t hecate .
#   docker run --rm -p 8443:8443 -p 8443:8443/udp -p 9000:9000 hecate
#   docker run --rm -v "$PWD/my.yaml:/etc/hecate/config.yaml:ro" -p 8443:8443 hecate -config=/etc/hecate/config.yaml
#   docker run --rm hecate check -config=config/example.yaml
#
# Listen addresses in the config must not be loopback-only (127.0.0.1:…) for a port that
# should be reachable from outside the container.

# --- build: Bun on Alpine compiles for musl natively ------------------------------------------
FROM oven/bun:1.4.5-alpine AS build
WORKDIR /src
# Runtime dependencies only (the bundle needs them; dev tools do not). bun reads
# package-lock.json, so the versions are the locked ones.
COPY package.json package-lock.json bunfig.toml ./
RUN bun install --production --ignore-scripts
COPY src ./src
# x64 by default; on an arm64 builder: --build-arg BUN_TARGET=bun-linux-arm64-musl
ARG BUN_TARGET=bun-linux-x64-musl
# The options and entry points of scripts/build.ts (test/cli/bundle.test.ts checks they match):
# src/runtime/worker-entry.ts is the worker threads' module (proxy.workers > 1), and --splitting
# keeps optional modules and their Node builtins out of what every process loads.
RUN bun build --compile --minify --splitting --target=${BUN_TARGET} src/main.ts src/runtime/worker-entry.ts --outfile /out/hecate \
 && /out/hecate --version

# --- run ----------------------------------------------------------------------------------------
FROM alpine:3.22
# The Bun runtime in the binary links libstdc++ (and through it libgcc).
RUN apk add --no-cache libstdc++ ca-certificates \
 && addgroup -S hecate \
 && adduser -S -D -H -G hecate -h /app hecate \
 && mkdir -p /app/config \
 && chown hecate:hecate /app /app/config
WORKDIR /app
COPY --from=build /out/hecate /usr/local/bin/hecate
# Writable by hecate: a self-signed certificate is written next to the config when none exists.
COPY --chown=hecate:hecate config/example.yaml /app/config/example.yaml
USER hecate
# 8443: public listener (TCP; UDP for HTTP/3), 9000: admin (defaults of proxy.listen / admin.listen)
EXPOSE 8443/tcp 8443/udp 9000/tcp
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/hecate"]
CMD ["-config=config/example.yaml"]
