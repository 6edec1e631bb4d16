#!/usr/bin/env bash
# What the tests need beyond a Docker engine (scripts/docker-up.sh), from Debian's packages:
# a private registry with htpasswd logins (tests/agent/test_registry.py) and a C compiler for the
# static UDP echo image (tests/agent/test_ingress.py), and Chromium with its driver for the web
# console's browser tests (tests/console, Playwright on /usr/bin/chromium: browsers cannot be
# downloaded in CI), and PostgreSQL's server binaries (initdb, pg_ctl: tests/pgcluster.py starts a
# throwaway cluster for the store contract suite and the failover drill). Installed only when
# missing; the tests themselves install nothing and fail (never skip) without them.
set -euo pipefail

log() { echo "test-deps: $*" >&2; }

missing=()
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
[ -e /usr/include/stdio.h ] || missing+=(libc6-dev)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]} from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
for tool in docker-registry htpasswd gcc chromium chromedriver; do
    command -v "$tool" >/dev/null 2>&1 || { log "$tool still missing after apt-get install"; exit 1; }
done
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || { log "initdb still missing after apt-get install"; exit 1; }
# Debian's package starts a cluster of its own on 5432; the tests start theirs on a free port
# and need nothing of it.
