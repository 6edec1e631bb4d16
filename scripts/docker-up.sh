#!/usr/bin/env bash
# Make sure a Docker engine answers and the local test image exists.
#   - installs Debian's docker.io and busybox-static when dockerd or busybox is missing (root only);
#   - starts dockerd in the background when no engine answers, and waits for its socket;
#   - builds the image gpumarket/busybox:latest with `docker import` (no registry is needed);
#   - installs Debian's docker-registry and apache2-utils (htpasswd) when missing, for the private
#     registry test (tests/agent/test_registry.py runs one on 127.0.0.1; it installs nothing).
# Idempotent: run it as often as you like.
set -euo pipefail

IMAGE="${GPUMARKET_TEST_IMAGE:-gpumarket/busybox:latest}"
log() { echo "docker-up: $*" >&2; }

if docker info >/dev/null 2>&1; then
    log "engine answers"
else
    if ! command -v dockerd >/dev/null 2>&1 || ! command -v busybox >/dev/null 2>&1; then
        log "installing docker.io and busybox-static from Debian"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq docker.io busybox-static >/dev/null
    fi
    log "starting dockerd (log: /tmp/dockerd.log)"
    nohup dockerd >/tmp/dockerd.log 2>&1 &
    for _ in $(seq 1 120); do
        docker info >/dev/null 2>&1 && break
        sleep 0.5
    done
    if ! docker info >/dev/null 2>&1; then
        log "dockerd did not come up; last lines of /tmp/dockerd.log:"
        tail -20 /tmp/dockerd.log >&2
        exit 1
    fi
    log "engine up"
fi

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    command -v busybox >/dev/null 2>&1 || {
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq busybox-static >/dev/null
    }
    root="$(mktemp -d)"
    mkdir -p "$root/bin" "$root/tmp" "$root/www" "$root/etc"
    cp "$(command -v busybox)" "$root/bin/busybox"
    for applet in $("$root/bin/busybox" --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
    done
    echo "root:x:0:0:root:/:/bin/sh" > "$root/etc/passwd"
    echo "nobody:x:65534:65534:nobody:/:/bin/sh" >> "$root/etc/passwd"
    echo "<h1>gpumarket</h1>" > "$root/www/index.html"
    tar -C "$root" -c . | docker import \
        --change 'ENV PATH=/bin' --change 'CMD ["/bin/sh"]' - "$IMAGE" >/dev/null
    rm -rf "$root"
    log "built $IMAGE"
fi
