"""The support table (marketplace/core/manifest/support.py): every field of the manifest model
has an entry saying what a provider does with it, and `notes` names what a manifest uses that
a typical provider may decline or run differently."""

from __future__ import annotations

import dataclasses

from marketplace.core import resources
from marketplace.core.manifest import model as manifest_model
from marketplace.core.manifest import parse_manifest
from marketplace.core.manifest.support import TABLE, Support, notes
from tests.helpers import BASE

# Every type a parsed manifest is made of (Replica is derived from the others, not read).
MODEL_TYPES = (
    manifest_model.Manifest,
    manifest_model.Service,
    manifest_model.Expose,
    manifest_model.ExposeTo,
    manifest_model.HttpOptions,
    manifest_model.StorageMount,
    manifest_model.Credentials,
    manifest_model.Endpoint,
    manifest_model.ServiceDeployment,
    resources.GroupSpec,
    resources.PlacementRequirements,
    resources.ResourceUnit,
    resources.Volume,
    resources.GpuRequest,
    resources.GpuOption,
    resources.JobSettings,
    resources.AuctionSettings,
)


def model_fields() -> set[str]:
    return {f"{t.__name__}.{f.name}" for t in MODEL_TYPES for f in dataclasses.fields(t)}


def test_every_model_field_has_an_entry() -> None:
    covered = {name for entry in TABLE for name in entry.model}
    assert sorted(model_fields() - covered) == []


def test_no_entry_names_a_field_the_model_lacks() -> None:
    covered = {name for entry in TABLE for name in entry.model}
    assert sorted(covered - model_fields()) == []


def test_paths_are_unique_and_every_verdict_is_one_of_four() -> None:
    paths = [entry.path for entry in TABLE]
    assert len(paths) == len(set(paths))
    for entry in TABLE:
        assert entry.support in Support
        if entry.support in (Support.DECLINED, Support.DEGRADED):
            assert entry.note, entry.path


def test_notes_for_the_base_manifest() -> None:
    found = {n.path: n for n in notes(parse_manifest(BASE))}
    assert set(found) == {
        "profiles.compute.*.resources.storage[].attributes.class",
        "profiles.compute.*.resources.gpu.attributes.vendor.nvidia[]",
        "profiles.placement.*.attributes",
        "profiles.placement.*.signedBy",
    }
    assert all(n.support is Support.DECLINED for n in found.values())
    assert found["profiles.placement.*.signedBy"].message.startswith(
        "declined by providers that lack attributes signed by the auditors named"
    )


def test_fields_a_provider_cannot_honour_are_declined_and_noted() -> None:
    text = BASE.replace("- global: true", "- global: true\n            ip: myip").replace(
        "as: 80", "as: 80\n        http_options:\n          max_body_size: 2048"
    )
    text += "endpoints:\n  myip:\n    kind: ip\nreclamation:\n  min_window: 1h\n"
    manifest = parse_manifest(text)
    found = {n.path: n for n in notes(manifest)}
    for path in ("services.*.expose[].to[].ip", "endpoints.*.kind", "reclamation.min_window"):
        assert found[path].support is Support.DECLINED
        assert found[path].message.startswith("declined by providers that lack "), path
    assert "services.*.expose[].http_options" not in found  # honoured: the ingress applies it
    assert set(manifest.groups[0].needs) == {"leased-ip", "reclamation-window"}


def test_a_cpu_architecture_is_a_need_of_the_order_not_a_warning() -> None:
    text = BASE.replace(
        "units: 0.5\n", "units: 0.5\n          attributes:\n            arch: aarch64\n"
    )
    manifest = parse_manifest(text, "job.yaml")
    assert manifest.warnings == ()
    assert manifest.groups[0].needs == ("cpu-arch/arm64",)
    (note,) = [n for n in notes(manifest) if n.path.endswith("cpu.attributes.arch")]
    assert note.message.startswith("declined by providers that lack that CPU architecture")
