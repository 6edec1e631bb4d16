"""Every real SDL in the awesome-akash sample reads as its index says: the schema-valid ones
parse; the schema-invalid ones are refused, each problem one clear line naming the field and
its line (scripts/sdl_corpus.py prints the reasons)."""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import pytest

from marketplace.core.manifest import ManifestError, parse_manifest
from tests.helpers import CORPUS_SDL

INDEX = {
    row["file"]: row for row in csv.DictReader((CORPUS_SDL / "_index.csv").read_text().splitlines())
}
FILES = sorted(p for p in CORPUS_SDL.iterdir() if p.suffix in (".yaml", ".yml"))
ONE_LINE = re.compile(r"^[^\n]+:\d+: [A-Za-z_][\w.\-\[\]]*: [^\n]+$")


def strict(path: Path) -> bool:
    row = INDEX[path.name]
    return row["yaml_ok"] == "1" and row["schema_valid"] == "1"


def test_the_corpus_is_all_here() -> None:
    assert len(FILES) == len(INDEX) == 119


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_corpus_file(path: Path) -> None:
    raw = path.read_bytes()
    if strict(path):
        manifest = parse_manifest(raw, path.name)
        assert manifest.groups
        return
    with pytest.raises(ManifestError) as caught:
        parse_manifest(raw, path.name)
    for err in caught.value.errors:
        assert ONE_LINE.match(str(err)), str(err)
        assert err.path and err.line >= 1


def test_corpus_summary(capsys: pytest.CaptureFixture[str]) -> None:
    """Counts for the record (printed with -s): exactly the schema-valid files parse."""
    outcome: Counter[str] = Counter()
    for path in FILES:
        try:
            manifest = parse_manifest(path.read_bytes(), path.name)
            outcome["valid"] += 1
            outcome["valid with warnings"] += bool(manifest.warnings)
        except ManifestError as err:
            outcome[f"rejected: {err.message.split(' (')[0][:60]}"] += 1
    with capsys.disabled():
        print("\nSDL corpus:", dict(sorted(outcome.items())))
    assert outcome["valid"] == sum(strict(p) for p in FILES) == 100
