"""`gpumarket auditor`: sign, revoke, list and verify providers' attributes (placement signedBy).

An auditor is a key like any other (`gpumarket keys create`); a marketplace counts its
signatures once its operator trusts it (`market serve --auditor ADDRESS`).
"""

from __future__ import annotations

import click

from marketplace.api.client import AuditorClient
from marketplace.api.v1 import market_pb2 as pb
from marketplace.cli.render import proto_dict, when
from marketplace.cli.tenant import Connection, load_key, market_options
from marketplace.core import units
from marketplace.core.errors import InvalidArgument
from marketplace.core.limits import check_attribute_key
from marketplace.terminal import friendly_errors, json_option, print_json, print_table


@click.group()
def auditor() -> None:
    """Sign providers' attributes as an auditor, and check them before signing."""


def parse_attributes(pairs: tuple[str, ...]) -> dict[str, str]:
    """KEY=VALUE arguments as attributes; a key given twice or a pair without '=' is refused."""
    attributes: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"{pair!r}: attributes are KEY=VALUE (e.g. host=akash)")
        check_attribute_key(key)
        if key in attributes:
            raise InvalidArgument(f"attribute {key} is given twice")
        attributes[key] = value
    return attributes


def _client(conn: Connection, signing: bool) -> AuditorClient:
    return conn.client(AuditorClient, load_key(conn.key_name) if signing else None)


def _print_findings(findings: pb.ProviderFindings) -> None:
    for f in findings.findings:
        click.echo(f"  {'ok  ' if f.ok else 'FAIL'} {f.check:<10} {f.message}")
    verdict = "every check holds" if findings.ok else "some checks do NOT hold"
    click.echo(f"{findings.provider}: {verdict}")


def _print_attestations(answer: pb.AttestationList) -> None:
    def state(a: pb.Attestation) -> str:
        if a.revoked_at_ms:
            return "revoked"
        if not a.trusted:
            return "untrusted auditor"
        return "valid" if a.valid else "expired"

    print_table(
        ["AUDITOR", "ATTRIBUTE", "SIGNED", "EXPIRES", "STATE", "SIGNEDBY NAMES"],
        [
            (
                a.auditor,
                f"{a.key}={a.value}",
                when(a.signed_at_ms),
                when(a.expires_at_ms),
                state(a),
                ", ".join(a.names),
            )
            for a in answer.attestations
        ],
    )


@auditor.command()
@click.argument("provider")
@click.argument("attributes", nargs=-1, required=True, metavar="KEY=VALUE...")
@click.option(
    "--expires",
    default="90d",
    show_default=True,
    help="How long the signature holds, on the marketplace's clock (e.g. 30d, 12h).",
)
@click.option(
    "--skip-verify", is_flag=True, help="Sign even when `auditor verify` finds a problem."
)
@market_options
@json_option
@friendly_errors
def sign(
    provider: str,
    attributes: tuple[str, ...],
    expires: str,
    skip_verify: bool,
    conn: Connection,
    as_json: bool,
) -> None:
    """Sign KEY=VALUE attributes of PROVIDER with your key (--key), after checking it."""
    signed = parse_attributes(attributes)
    try:
        valid_for_ms = units.parse_duration_ms(expires)
    except ValueError as exc:
        raise InvalidArgument(f"--expires: {exc}") from None
    client = _client(conn, signing=True)
    if not skip_verify:
        findings = client.verify(provider, signed)
        if not findings.ok:
            _print_findings(findings)
            raise InvalidArgument(
                f"not signed: {provider} fails the checks above (--skip-verify to sign anyway)"
            )
    now = conn.market_client().info().server_time_ms
    answer = client.sign(provider, signed, now + valid_for_ms)
    if as_json:
        print_json(proto_dict(answer))
        return
    keys = ", ".join(f"{k}={v}" for k, v in sorted(signed.items()))
    click.echo(f"signed {keys} for {provider} until {when(now + valid_for_ms)}")


@auditor.command()
@click.argument("provider")
@click.argument("keys", nargs=-1, metavar="[KEY...]")
@market_options
@json_option
@friendly_errors
def revoke(
    provider: str,
    keys: tuple[str, ...],
    conn: Connection,
    as_json: bool,
) -> None:
    """Withdraw your signatures of KEYs (all of them when none) for PROVIDER."""
    answer = _client(conn, signing=True).revoke(provider, keys)
    if as_json:
        print_json(proto_dict(answer))
        return
    click.echo(f"revoked {', '.join(keys) or 'every attribute you signed'} for {provider}")


@auditor.command("list")
@click.argument("provider")
@market_options
@json_option
@friendly_errors
def list_(provider: str, conn: Connection, as_json: bool) -> None:
    """What auditors signed for PROVIDER, and whether it counts on this marketplace now."""
    answer = _client(conn, signing=False).list(provider)
    if as_json:
        print_json(proto_dict(answer))
        return
    _print_attestations(answer)
    trusted = ", ".join(answer.trusted_auditors) or "none"
    click.echo(f"trusted auditors: {trusted}")
    for alias in answer.aliases:
        click.echo(f"  signedBy {alias.foreign} means {alias.auditor} here")


@auditor.command()
@click.argument("provider")
@click.argument("attributes", nargs=-1, metavar="[KEY=VALUE...]")
@market_options
@json_option
@friendly_errors
def verify(
    provider: str,
    attributes: tuple[str, ...],
    conn: Connection,
    as_json: bool,
) -> None:
    """Check PROVIDER before signing: its NVML inventory (models, VRAM, UUIDs stable across
    re-registrations, unique on the market), its declared resources against what it reports,
    and any KEY=VALUE you mean to sign. Exit 1 if something does not hold."""
    findings = _client(conn, signing=False).verify(provider, parse_attributes(attributes))
    if as_json:
        print_json(proto_dict(findings))
    else:
        _print_findings(findings)
    if not findings.ok:
        raise SystemExit(1)
