#!/usr/bin/env bash
# Install what the tests need and run them all: ruff, mypy, then the whole pytest suite (Docker tests
# included: a Docker engine is installed and started when none answers).
# This is the command README gives and .ci/run calls. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

# the suite reads the shared fixtures and corpus, which are not in the checkout (tests/conftest.py)
shared="${GPUMARKET_SHARED:-../shared}"
if [ ! -d "$shared/fixtures" ] || [ ! -d "$shared/corpus" ]; then
    echo "test.sh: the tests need the shared fixtures and corpus at $shared: put the project's" \
        "shared/ beside the checkout, or set GPUMARKET_SHARED=/path/to/shared" >&2
    exit 4
fi

python -m pip install -q --disable-pip-version-check -e '.[test]'
if [ "${GPUMARKET_SKIP_DOCKER:-0}" != "1" ]; then
    bash scripts/docker-up.sh
    bash scripts/test-deps.sh
fi
python -m ruff check .
python -m ruff format --check .
python -m mypy

set +e
python -m pytest -q -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: failing on purpose" >&2
    exit 1
fi
exit "$status"
