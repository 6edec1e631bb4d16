"""`gpumarket manifest validate FILE...`: check SDL manifests before deploying them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from marketplace.core import units
from marketplace.core.limits import MAX_MANIFEST_BYTES
from marketplace.core.manifest import Manifest, ManifestError, parse_manifest
from marketplace.core.manifest.support import Support, notes
from marketplace.core.matching import option_label, unit_totals
from marketplace.core.money import MICRO, format_amount
from marketplace.terminal import json_option, print_json
from marketplace.userfiles import read_bounded

MAX_FILE_BYTES = MAX_MANIFEST_BYTES  # what the market takes (an SDL is a few KiB)


def read_manifest_file(path: Path) -> bytes:
    """A manifest file's bytes, never more than the market takes (userfiles.read_bounded)."""
    return read_bounded(path, MAX_FILE_BYTES, "a manifest")


@click.group()
def manifest() -> None:
    """Work with job manifests (Akash SDL v2.0/v2.1/v2.2 plus optional `gpumarket:` settings)."""


@manifest.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@json_option
def validate(files: tuple[Path, ...], as_json: bool) -> None:
    """Check each FILE; print a summary, warnings and notes, or one line per error.

    Notes name the fields a typical provider may decline (it lacks what they ask for) or runs
    differently from Akash, and a GPU model deploy refuses without --force. Exits 0 only if
    every file is valid.
    """
    reports = [check_file(path) for path in files]
    if as_json:
        print_json(reports)
    else:
        for report in reports:
            _print_report(report)
    if not all(report["valid"] for report in reports):
        raise SystemExit(1)


def check_file(path: Path) -> dict[str, Any]:
    """One file's verdict as plain data (what --json prints)."""
    name = str(path)
    try:
        raw = read_manifest_file(path)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        error = {"line": None, "path": "", "message": f"cannot read: {reason}"}
        return {
            "file": name,
            "valid": False,
            "errors": [error],
            "text": [f"{name}: cannot read: {reason}"],
        }
    try:
        parsed = parse_manifest(raw, name)
    except ManifestError as exc:
        errors = [{"line": e.line, "path": e.path, "message": e.message} for e in exc.errors]
        return {
            "file": name,
            "valid": False,
            "errors": errors,
            "text": [e.location_message for e in exc.errors],
        }
    return {
        "file": name,
        "valid": True,
        "errors": [],
        "warnings": list(parsed.warnings),
        "notes": field_notes(parsed),
        "summary": summarize(parsed),
    }


def field_notes(parsed: Manifest) -> list[dict[str, str]]:
    """What to know before deploying: fields a provider may decline or not run as written."""
    found = [
        {"path": n.path, "support": str(n.support), "message": n.message} for n in notes(parsed)
    ]
    for line in parsed.unmatchable:
        message = f"deploy refuses it unless --force: {line}"
        found.append({"path": "gpu model", "support": str(Support.REFUSED), "message": message})
    return found


def summarize(parsed: Manifest) -> dict[str, Any]:
    """Totals a tenant checks before paying: what runs, on what, for at most how much."""
    gpus: dict[str, int] = {}
    cpu = memory = storage = replicas = 0
    for group in parsed.groups:
        for unit in group.resources:
            unit_cpu, unit_memory, unit_storage = unit_totals(unit)
            cpu, memory, storage = cpu + unit_cpu, memory + unit_memory, storage + unit_storage
            replicas += unit.count
            if unit.total_gpus:
                label = " | ".join(option_label(o) for o in unit.gpu.options)
                gpus[label] = gpus.get(label, 0) + unit.total_gpus
    price = sum(group.max_price_per_hour for group in parsed.groups)
    denom = parsed.groups[0].denom if parsed.groups else "uact"
    job = parsed.job
    return {
        "version": parsed.version,
        "groups": [group.name for group in parsed.groups],
        "services": sorted(parsed.services),
        "replicas": replicas,
        "gpus": gpus,
        "cpu_millis": cpu,
        "memory_bytes": memory,
        "storage_bytes": storage,
        "max_price_per_hour": {
            "micro": price,
            "whole": f"{price // MICRO}.{price % MICRO:06d}",
            "denom": denom,
        },
        "job": {
            "kind": str(job.kind),
            "max_runtime_ms": job.max_runtime_ms,
            "restart": str(job.restart_policy),
            "bid_window_ms": job.auction.bid_window_ms,
            "payment": str(job.auction.payment),
            "manual": job.auction.manual,
            "min_reliability": job.auction.min_reliability,
            "tier": str(job.tier),
        },
        "sha256": parsed.sdl_sha256.hex(),
    }


def _print_report(report: dict[str, Any]) -> None:
    name = report["file"]
    if not report["valid"]:
        for line in report["text"]:
            click.echo(line)
        return
    s = report["summary"]
    job = s["job"]
    price = s["max_price_per_hour"]
    gpus = ", ".join(f"{n}× {label}" for label, n in s["gpus"].items()) or "none"
    runtime = units.format_duration(job["max_runtime_ms"]) if job["max_runtime_ms"] else "none"
    click.echo(f"{name}: valid (SDL {s['version']})")
    click.echo(f"  groups:    {', '.join(s['groups'])}")
    click.echo(
        f"  services:  {len(s['services'])} ({', '.join(s['services'])}), {s['replicas']} replicas"
    )
    click.echo(f"  GPUs:      {gpus}")
    click.echo(
        f"  CPU {units.format_cpu(s['cpu_millis'])}, memory {units.format_size(s['memory_bytes'])}, "
        f"storage {units.format_size(s['storage_bytes'])}"
    )
    click.echo(
        f"  max price: {format_amount(price['micro'], price['denom'])}/hour "
        f"({price['micro']} {price['denom']}/hour)"
    )
    click.echo(
        f"  job:       {job['kind']}, max runtime {runtime}, restart {job['restart']}, "
        f"{job['payment']} auction, bid window {units.format_duration(job['bid_window_ms'])}"
        + (", manual pick" if job["manual"] else "")
    )
    for warning in report["warnings"]:
        click.echo(f"  warning: {warning}")
    for note in report["notes"]:
        click.echo(f"  note: {note['path']}: {note['message']}")
