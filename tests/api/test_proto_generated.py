"""The committed generated code must be exactly what grpcio-tools makes from proto/."""

from __future__ import annotations

import filecmp
import subprocess
from pathlib import Path

from tests.helpers import REPO

GENERATED = REPO / "marketplace" / "api" / "v1"


def test_generated_code_matches_the_proto(tmp_path: Path):
    subprocess.run(["bash", str(REPO / "scripts" / "gen_proto.sh"), str(tmp_path)], check=True)
    fresh = tmp_path / "marketplace" / "api" / "v1"
    names = sorted(p.name for p in fresh.iterdir())
    assert names == ["market_pb2.py", "market_pb2.pyi", "market_pb2_grpc.py"]
    stale = [n for n in names if not filecmp.cmp(fresh / n, GENERATED / n, shallow=False)]
    assert not stale, f"regenerate with scripts/gen_proto.sh: {stale} differ from proto/"
