"""Every schema-valid SDL of the awesome-akash sample is read as written: each field a provider
acts on (GPUs and their model/ram/interface, storage classes and persistent volumes, exposes
with accept/to/http_options, env, command/args, credentials, placement attributes, signedBy,
pricing, count) is compared with a plain reading of the YAML, done here without the parser,
and with the sample's own index (service count, GPU models, most GPU units, denoms)."""

from __future__ import annotations

import csv
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from marketplace.core.manifest import Manifest, parse_manifest
from marketplace.core.money import per_block_to_per_hour
from tests.core.test_sdl_schema import FULL
from tests.helpers import CORPUS_SDL

INDEX = {
    row["file"]: row for row in csv.DictReader((CORPUS_SDL / "_index.csv").read_text().splitlines())
}
VALID = sorted(
    CORPUS_SDL / name
    for name, row in INDEX.items()
    if row["yaml_ok"] == "1" and row["schema_valid"] == "1"
)
_SIZE = re.compile(r"^([0-9.]+)\s*([kmgtpe]?)(i?)b?$", re.IGNORECASE)
_POWER = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}


def size(text: object) -> int:
    """A byte size as Akash's units.go reads it: k..e are powers of 1000, Ki..Ei of 1024."""
    found = _SIZE.match(str(text).strip())
    assert found, text
    number, prefix, binary = found.groups()
    base = 1024 if binary else 1000
    return int(Decimal(number) * base ** _POWER[prefix.lower()])


def cpu_millis(units: object) -> int:
    text = str(units)
    return int(text[:-1]) if text.endswith("m") else int(Decimal(text) * 1000)


def volumes(storage: Any) -> list[tuple[str, int, bool, str | None]]:
    items = [storage] if isinstance(storage, dict) else storage
    found = []
    for item in items:
        attrs = item.get("attributes") or {}
        persistent = str(attrs.get("persistent", False)).lower() in ("true", "yes", "on")
        storage_class = attrs.get("class") or ("default" if persistent else None)
        found.append((item.get("name", "default"), size(item["size"]), persistent, storage_class))
    return found


def gpu_options(gpu: Any) -> tuple[int, list[tuple[str, int | None, str | None]]]:
    if not gpu or not gpu.get("units"):
        return 0, []
    options: list[tuple[str, int | None, str | None]] = []
    for models in gpu["attributes"]["vendor"].values():
        if not models:
            options.append(("*", None, None))
        for entry in models or []:
            ram = size(entry["ram"]) // 1024**3 if "ram" in entry else None
            options.append((str(entry["model"]).lower(), ram, entry.get("interface")))
    return int(gpu["units"]), options


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_every_field_is_read_as_written(path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    manifest = parse_manifest(path.read_bytes(), path.name)
    check_services(raw["services"], manifest)
    check_groups(raw, manifest)


def check_services(services: dict[str, Any], manifest: Manifest) -> None:
    assert sorted(manifest.services) == sorted(services)
    for name, spec in services.items():
        read = manifest.services[name]
        assert read.image == spec["image"]
        assert read.command == tuple(spec.get("command") or ())
        assert read.args == tuple(spec.get("args") or ())
        assert read.env == tuple(tuple(e.partition("=")[::2]) for e in spec.get("env") or ())
        exposes = spec.get("expose") or []
        assert len(read.expose) == len(exposes)
        for expose, written in zip(read.expose, exposes, strict=True):
            assert expose.port == written["port"]
            assert expose.as_port == written.get("as", written["port"])
            assert expose.proto == str(written.get("proto", "tcp")).lower()
            assert expose.accept == tuple(h.lower() for h in written.get("accept") or ())
            targets = written.get("to") or []
            assert [(t.service, t.global_, t.ip) for t in expose.to] == [
                (t.get("service"), bool(t.get("global", False)), t.get("ip")) for t in targets
            ]
            options = written.get("http_options") or {}
            if "max_body_size" in options:
                assert expose.http_options.max_body_size == options["max_body_size"]
            if "next_tries" in options:
                assert expose.http_options.next_tries == options["next_tries"]
        mounts = (spec.get("params") or {}).get("storage") or {}
        assert {m.volume: (m.mount, m.read_only) for m in read.storage} == {
            volume: (m.get("mount", ""), bool(m.get("readOnly", False)))
            for volume, m in mounts.items()
        }
        written_credentials = spec.get("credentials")
        if written_credentials is None:
            assert read.credentials is None
        else:
            assert read.credentials is not None
            assert read.credentials.host == written_credentials["host"]
            assert read.credentials.username == written_credentials["username"]
            assert read.credentials.password == written_credentials["password"]


def check_groups(raw: dict[str, Any], manifest: Manifest) -> None:
    compute = raw["profiles"]["compute"]
    placements = raw["profiles"]["placement"]
    counts = {
        (service, placement): entry["count"]
        for service, where in raw["deployment"].items()
        for placement, entry in where.items()
    }
    assert sorted(g.name for g in manifest.groups) == sorted({p for _, p in counts})
    for group in manifest.groups:
        written = placements[group.name]
        attributes = written.get("attributes") or {}
        expected = {
            k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in attributes.items()
        }
        for service, placement in counts:  # params.tee is a placement attribute (Akash's rule)
            tee = (raw["services"][service].get("params") or {}).get("tee")
            if placement == group.name and tee:
                expected["tee/type"] = tee
        assert dict(group.requirements.attributes) == expected
        signed = written.get("signedBy") or {}
        assert group.requirements.signed_by_all_of == tuple(signed.get("allOf") or ())
        assert group.requirements.signed_by_any_of == tuple(signed.get("anyOf") or ())
        for unit in group.resources:  # SDL 2.0 (all of the sample): one unit per service
            (service,) = unit.services
            profile_name = raw["deployment"][service][group.name]["profile"]
            resources = compute[profile_name]["resources"]
            assert unit.count == counts[(service, group.name)]
            assert unit.cpu_millis == cpu_millis(resources["cpu"]["units"])
            assert unit.memory_bytes == size(resources["memory"]["size"])
            assert [
                (v.name, v.size_bytes, v.persistent, v.storage_class) for v in unit.storage
            ] == volumes(resources["storage"])
            gpus, options = gpu_options(resources.get("gpu"))
            assert unit.gpu.units == gpus
            assert [(o.model, o.ram_gib, o.interface) for o in unit.gpu.options] == options
            price = written["pricing"][profile_name]
            assert group.denom == price["denom"]
            amount = Decimal(str(price["amount"]))
            assert unit.max_price_per_hour == per_block_to_per_hour(amount)


def test_the_schema_complete_manifest_is_read_as_written() -> None:
    """What the sample lacks (credentials, every http_options key, readOnly, allOf): the
    manifest holding every field of Akash's schema (test_sdl_schema), read the same way."""
    text = yaml.safe_dump(FULL, sort_keys=False)
    manifest = parse_manifest(text, "full.yaml")
    check_services(FULL["services"], manifest)
    check_groups(FULL, manifest)
    assert any(s.credentials for s in manifest.services.values())


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_what_the_index_records_is_what_is_read(path: Path) -> None:
    row = INDEX[path.name]
    manifest = parse_manifest(path.read_bytes(), path.name)
    units = [u for g in manifest.groups for u in g.resources]
    assert manifest.version == row["version"]
    assert len(manifest.services) == int(row["services"])
    assert max((u.gpu.units for u in units), default=0) == int(row["max_gpu_units"])
    models = {
        o.model + (f"/{o.ram_gib}Gi" if o.ram_gib else "") for u in units for o in u.gpu.options
    }
    assert models == set(filter(None, row["gpu_models"].split(";")))
    assert {g.denom for g in manifest.groups} == set(row["denoms"].split(";"))


def test_the_sample_has_the_constructs_checked() -> None:
    """The comparisons above are not vacuous: the sample holds each kind of field."""
    manifests = [parse_manifest(p.read_bytes(), p.name) for p in VALID]
    services = [s for m in manifests for s in m.services.values()]
    units = [u for m in manifests for g in m.groups for u in g.resources]
    groups = [g for m in manifests for g in m.groups]
    assert len(VALID) == 100
    assert any(e.accept for s in services for e in s.expose)
    assert any(t.ip for s in services for e in s.expose for t in e.to)
    assert any(s.command for s in services) and any(s.args for s in services)
    assert any(v.persistent for u in units for v in u.storage)
    assert any(v.storage_class == "ram" for u in units for v in u.storage)
    assert any(o.ram_gib for u in units for o in u.gpu.options)
    assert any(o.model == "*" for u in units for o in u.gpu.options)
    assert any(g.requirements.signed_by_any_of for g in groups)
    assert any(g.requirements.attributes for g in groups)
    assert {g.denom for g in groups} == {"uact", "uakt"}
