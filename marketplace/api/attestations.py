"""Wire ↔ core for auditors: attestations, what counts for a provider, inventory reports and
the findings of `auditor verify` (convert.py holds the rest of the API's conversions)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from marketplace.api.v1 import market_pb2 as pb
from marketplace.core.attestations import Attestation, AttestationBook
from marketplace.core.provider_audit import Finding, GpuReading, InventoryReport


def attestation_to_proto(att: Attestation, book: AttestationBook, now_ms: int) -> pb.Attestation:
    proof = pb.SignedRequest()
    if att.proof:
        proof.ParseFromString(att.proof)
    return pb.Attestation(
        provider=att.provider,
        auditor=att.auditor,
        key=att.key,
        value=att.value,
        signed_at_ms=att.signed_at_ms,
        expires_at_ms=att.expires_at_ms,
        revoked_at_ms=att.revoked_at_ms,
        trusted=book.trust.trusts(att.auditor),
        valid=book.counts(att, now_ms),
        names=list(book.trust.names_of(att.auditor)),
        proof=proof,
    )


def attestation_list(
    attestations: Sequence[Attestation], book: AttestationBook, now_ms: int
) -> pb.AttestationList:
    trust = book.trust
    return pb.AttestationList(
        attestations=[attestation_to_proto(a, book, now_ms) for a in attestations],
        trusted_auditors=list(trust.trusted),
        aliases=[pb.AuditorAlias(foreign=f, auditor=a) for f, a in sorted(trust.aliases)],
    )


def audited_to_proto(audited: Mapping[str, Mapping[str, str]]) -> pb.AuditedAttributes:
    return pb.AuditedAttributes(
        auditors=[
            pb.AuditedAttributes.ByAuditor(
                name=name,
                attributes=[pb.Attribute(key=k, value=v) for k, v in sorted(attrs.items())],
            )
            for name, attrs in sorted(audited.items())
        ]
    )


def audited_from_proto(msg: pb.AuditedAttributes) -> dict[str, dict[str, str]]:
    """What bidding.decide takes as `auditors`."""
    return {a.name: {x.key: x.value for x in a.attributes} for a in msg.auditors}


def inventory_report_from_proto(provider: str, time_ms: int, inv: pb.Inventory) -> InventoryReport:
    return InventoryReport(
        provider=provider,
        time_ms=time_ms,
        gpus=tuple(
            GpuReading(
                uuid=g.uuid,
                name=g.name,
                model=g.model,
                memory_mib=g.memory_mib,
                interface=g.interface,
                serial=g.serial,
                healthy=g.healthy,
            )
            for g in inv.gpus
        ),
        cpu_millis=inv.cpu_millis,
        memory_bytes=inv.memory_bytes,
        storage_bytes=inv.storage_bytes,
    )


def findings_to_proto(provider: str, findings: Sequence[Finding]) -> pb.ProviderFindings:
    return pb.ProviderFindings(
        provider=provider,
        ok=all(f.ok for f in findings),
        findings=[pb.Finding(check=f.check, ok=f.ok, message=f.message) for f in findings],
    )
