"""How the parser reads the SDL sample (../shared/corpus/sdl): valid or refused, and why.

    python scripts/sdl_corpus.py [CORPUS_DIR]

Prints, against the sample's index (schema_valid, from Akash's JSON schema): how many files
parse and how many are refused, each refusal's reason (values masked, so like reasons count
together), schema-valid files refused and schema-invalid ones accepted (both should be 0), and
for the valid files the deploy-time notes (fields a provider may decline or run differently;
GPU models deploy refuses without --force). Runs with whichever parser is on PYTHONPATH, so the
same script gives the before and after of a parser change.
"""

from __future__ import annotations

import csv
import os
import re
import sys
from collections import Counter
from pathlib import Path

from marketplace.core.manifest import ManifestError, parse_manifest

try:  # absent before the support table existed
    from marketplace.core.manifest.support import notes
except ImportError:  # pragma: no cover - only when measuring an older parser
    notes = None


def reason(message: str) -> str:
    masked = re.sub(r"'[^']*'|\"[^\"]*\"|\b\d[\d.]*\b", "…", message)
    return masked.split(" (")[0].split(";")[0][:70]


def main(corpus: Path) -> None:
    index = {r["file"]: r for r in csv.DictReader((corpus / "_index.csv").open())}
    outcome: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    mismatched: list[str] = []
    noted: Counter[str] = Counter()
    for path in sorted(p for p in corpus.iterdir() if p.suffix in (".yaml", ".yml")):
        schema_valid = index[path.name]["schema_valid"] == "1"
        try:
            manifest = parse_manifest(path.read_bytes(), path.name)
        except ManifestError as err:
            outcome["refused"] += 1
            for error in err.errors:
                reasons[reason(error.message)] += 1
            if schema_valid:
                mismatched.append(f"schema-valid but refused: {err}")
            continue
        outcome["valid"] += 1
        outcome["valid with warnings"] += bool(manifest.warnings)
        if not schema_valid:
            mismatched.append(f"schema-invalid but accepted: {path.name}")
        if getattr(manifest, "unmatchable", ()):
            outcome["valid, but deploy refuses (unknown GPU model) without --force"] += 1
        for note in notes(manifest) if notes else ():
            noted[f"{note.support}: {note.path}"] += 1
    schema = Counter("valid" if r["schema_valid"] == "1" else "invalid" for r in index.values())
    print(f"SDL sample: {len(index)} files; Akash's schema: {dict(schema)}")
    print(f"parser: {dict(outcome)}")
    print("refusals (one file may have several):")
    for text, count in reasons.most_common():
        print(f"  {count:3d}  {text}")
    print(f"disagreements with the schema: {len(mismatched)}")
    for line in mismatched:
        print(f"  {line}")
    if noted:
        print("notes on valid files (fields a provider may decline or run differently):")
        for text, count in noted.most_common():
            print(f"  {count:3d}  {text}")


if __name__ == "__main__":
    shared = Path(
        os.environ.get("GPUMARKET_SHARED", Path(__file__).resolve().parents[2] / "shared")
    )
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else shared / "corpus" / "sdl")
