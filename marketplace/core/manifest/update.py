"""What an update in place may change: the pure comparison of a running deployment's manifest
with the one its tenant sends (`gpumarket update`, Akash's MsgUpdateDeployment).

As on Akash, an update changes what runs, never what was bought: each service's image,
command, args, env and registry credentials may change; its resources, placement, pricing,
replica count, exposes, storage mounts, permissions and the job's own settings may not (they
were the terms of the auction and of the lease). `plan_update` names each change and each
refusal, one line per service and field, so the tenant learns everything in one pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from marketplace.core.limits import clipped
from marketplace.core.manifest.model import Manifest, Service
from marketplace.core.resources import GroupSpec, ResourceUnit

_KEYS_NAMED = 10  # env keys a change line names (then "and N more")
# Service fields an update may change, in the order a change is told.
UPDATABLE = ("image", "command", "args", "env", "credentials")
# Service fields that are part of the lease's terms: a change is refused.
FIXED = ("expose", "storage", "permissions", "tee")


@dataclass(frozen=True, slots=True)
class UpdatePlan:
    """changes: "web: image nginx:1 → nginx:2" lines; refusals: why the update cannot be made
    in place ("web: resources (cpu) cannot change in place"). Allowed when no refusal and at
    least one change."""

    changes: tuple[str, ...]
    refusals: tuple[str, ...]

    @property
    def allowed(self) -> bool:
        return not self.refusals and bool(self.changes)

    @property
    def reason(self) -> str:
        """One line saying why the update is refused ("" when allowed)."""
        if self.refusals:
            more = len(self.refusals) - 1
            return self.refusals[0] + (f" (and {more} more)" if more else "")
        if not self.changes:
            return "the new manifest changes nothing that an update may change"
        return ""


def plan_update(old: Manifest, new: Manifest) -> UpdatePlan:
    """Compare the running manifest with the new one (both parsed and valid)."""
    refusals = [*_group_refusals(old.groups, new.groups), *_job_refusals(old, new)]
    changes: list[str] = []
    gone = sorted(set(old.services) - set(new.services))
    added = sorted(set(new.services) - set(old.services))
    refusals += [f"{name}: a service cannot be removed in place" for name in gone]
    refusals += [f"{name}: a service cannot be added in place" for name in added]
    for name in sorted(set(old.services) & set(new.services)):
        before, after = old.services[name], new.services[name]
        changes += [
            _change_text(name, f, before, after) for f in UPDATABLE if _differs(f, before, after)
        ]
        refusals += [
            f"{name}: {f} cannot change in place" for f in FIXED if _differs(f, before, after)
        ]
    return UpdatePlan(tuple(changes), tuple(refusals))


def _differs(name: str, before: Service, after: Service) -> bool:
    return bool(getattr(before, name) != getattr(after, name))


def _change_text(service: str, name: str, before: Service, after: Service) -> str:
    """One short line: what it quotes from the manifest is cut (an env key may be 1 MiB)."""
    if name == "image":
        return f"{service}: image {clipped(before.image, 120)} → {clipped(after.image, 120)}"
    if name == "env":  # values may be secrets: name the keys only
        keys = sorted({k for k, _ in set(before.env) ^ set(after.env)})
        named = ", ".join(clipped(k) for k in keys[:_KEYS_NAMED])
        more = f" and {len(keys) - _KEYS_NAMED} more" if len(keys) > _KEYS_NAMED else ""
        return f"{service}: env ({named}{more})"
    if name == "credentials":
        return f"{service}: registry credentials"
    return f"{service}: {name}"


# (what it is called in a refusal, how to read it off a unit)
_UNIT_FIELDS: tuple[tuple[str, Callable[[ResourceUnit], object]], ...] = (
    ("count", lambda u: u.count),
    ("resources (cpu)", lambda u: u.cpu_millis),
    ("resources (memory)", lambda u: u.memory_bytes),
    ("resources (storage)", lambda u: u.storage),
    ("resources (gpu)", lambda u: u.gpu),
    ("pricing", lambda u: u.max_price_per_hour),
    ("exposed ports", lambda u: u.ports),
)


def _group_refusals(old: tuple[GroupSpec, ...], new: tuple[GroupSpec, ...]) -> list[str]:
    before = {g.name: g for g in old}
    after = {g.name: g for g in new}
    if set(before) != set(after):
        return [
            "placement groups cannot change in place "
            f"({clipped(', '.join(sorted(before)), 200)} → {clipped(', '.join(sorted(after)), 200)})"
        ]
    found: list[str] = []
    for name in sorted(before):
        a, b = before[name], after[name]
        told = len(found)
        if a.needs != b.needs:  # a CPU architecture, leased IPs, ingress, reclamation notice
            found.append(
                f"placement {name}: what its provider must offer "
                f"({', '.join(a.needs) or 'nothing more'} → {', '.join(b.needs) or 'nothing more'}) "
                "cannot change in place"
            )
        if a.requirements != b.requirements:
            found.append(f"placement {name}: attributes and signedBy cannot change in place")
        if a.denom != b.denom:
            found.append(f"placement {name}: pricing denom cannot change in place")
        units_a = {u.services: u for u in a.resources}
        units_b = {u.services: u for u in b.resources}
        if set(units_a) != set(units_b):
            found.append(f"placement {name}: its services or profiles cannot change in place")
            continue
        for services, unit in units_a.items():
            label = clipped(",".join(services), 120)
            found += [
                f"{label}: {what} cannot change in place"
                for what, read in _UNIT_FIELDS
                if read(unit) != read(units_b[services])
            ]
        if a != b and len(found) == told:  # the market compares whole groups: so does the plan
            found.append(f"placement {name}: its terms cannot change in place")
    return found


def _job_refusals(old: Manifest, new: Manifest) -> list[str]:
    found = []
    if old.job != new.job:
        found.append(
            "gpumarket job settings (kind, runtime, restart, auction) cannot change in place"
        )
    if old.reclamation_min_window_ms != new.reclamation_min_window_ms:
        found.append("reclamation (the provider's notice before reclaiming) cannot change in place")
    if old.endpoints != new.endpoints:
        found.append("endpoints cannot change in place")
    if old.deployments != new.deployments:
        found.append("deployment (service → placement, profile, count) cannot change in place")
    return found
