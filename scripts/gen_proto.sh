#!/usr/bin/env bash
# Regenerate the committed protobuf/gRPC code from proto/. Usage: scripts/gen_proto.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-.}"
python -m grpc_tools.protoc -I proto --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
    proto/marketplace/api/v1/*.proto
