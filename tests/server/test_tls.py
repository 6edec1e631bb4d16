"""TLS and mutual TLS with real certificates: a CA made here with `cryptography`, a real
`market serve --tls-cert/--tls-key [--tls-client-ca]` process, the project's own client."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from marketplace.api.client import MarketClient, MarketUnavailable, channel
from marketplace.cli.main import cli
from marketplace.core.errors import Unavailable
from marketplace.identity import Key
from provider_agent.agent import read_inventory, tls_settings
from provider_agent.config import AgentConfig, ConfigError, load_config
from provider_agent.link import MarketLink
from tests.helpers import EXAMPLES
from tests.server.market_process import MarketProcess, refused_start

Name = x509.Name
SERVER_NAMES: list[x509.GeneralName] = [
    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    x509.DNSName("localhost"),
]


@dataclass
class Issued:
    cert: Path
    key: Path


class Authority:
    """A certificate authority in a directory: its own certificate, and what it issues."""

    def __init__(self, directory: Path, name: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.certificate = (
            self._builder(subject, self.key.public_key())
            .issuer_name(subject)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.cert = directory / f"{name}-ca.pem"
        self.cert.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))

    @staticmethod
    def _builder(subject: Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    def issue(self, name: str, *, server: bool) -> Issued:
        """A leaf certificate: for a server (SAN 127.0.0.1 and localhost) or a client."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            self._builder(subject, key.public_key())
            .issuer_name(self.certificate.subject)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(SERVER_NAMES), False)
        cert = builder.sign(self.key, hashes.SHA256())
        issued = Issued(self.directory / f"{name}.pem", self.directory / f"{name}-key.pem")
        issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        issued.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return issued


@dataclass
class Pki:
    ca: Authority
    stranger: Authority  # a CA nobody here trusts
    server: Issued
    client: Issued
    stranger_client: Issued


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca, stranger = Authority(directory, "market"), Authority(directory, "stranger")
    return Pki(
        ca=ca,
        stranger=stranger,
        server=ca.issue("server", server=True),
        client=ca.issue("provider", server=False),
        stranger_client=stranger.issue("intruder", server=False),
    )


@pytest.fixture(scope="module")
def tls_market(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MarketProcess]:
    data_dir = tmp_path_factory.mktemp("tls") / "market"
    tls = ("--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key))
    with MarketProcess.start(data_dir, *tls) as market:
        yield market


@pytest.fixture(scope="module")
def mtls_market(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MarketProcess]:
    data_dir = tmp_path_factory.mktemp("mtls") / "market"
    tls = ("--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key))
    with MarketProcess.start(data_dir, *tls, "--tls-client-ca", str(pki.ca.cert)) as market:
        yield market


# --- TLS -------------------------------------------------------------------------------------


def test_a_client_trusting_the_ca_talks_tls(pki: Pki, tls_market: MarketProcess) -> None:
    admin = Key.from_pem((tls_market.data_dir / "admin.pem").read_bytes())
    with MarketClient(tls_market.address, key=admin, tls_ca=pki.ca.cert) as client:
        assert client.list_providers() == []
        assert client.audit().balanced  # a signed read, bound to this market's id, over TLS


def test_the_tenant_cli_trusts_a_ca_from_the_environment(
    pki: Pki, tls_market: MarketProcess
) -> None:
    env = {"GPUMARKET_MARKET": tls_market.address, "GPUMARKET_TLS_CA": str(pki.ca.cert)}
    result = CliRunner().invoke(cli, ["providers", "--json"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "[]"


def test_a_client_trusting_another_ca_is_refused(pki: Pki, tls_market: MarketProcess) -> None:
    with (
        MarketClient(tls_market.address, tls_ca=pki.stranger.cert, timeout_s=5) as client,
        pytest.raises(MarketUnavailable, match="TLS handshake with the marketplace"),
    ):
        client.list_providers()


def test_a_plaintext_client_gets_nothing_from_a_tls_market(tls_market: MarketProcess) -> None:
    with (
        MarketClient(tls_market.address, timeout_s=5) as client,
        pytest.raises(MarketUnavailable),
    ):
        client.list_providers()


# --- mutual TLS ------------------------------------------------------------------------------


def test_mtls_refuses_a_client_without_a_certificate(pki: Pki, mtls_market: MarketProcess) -> None:
    with (
        MarketClient(mtls_market.address, tls_ca=pki.ca.cert, timeout_s=5) as client,
        pytest.raises(MarketUnavailable),
    ):
        client.list_providers()


def test_mtls_refuses_a_certificate_of_another_ca(pki: Pki, mtls_market: MarketProcess) -> None:
    intruder = (pki.stranger_client.cert, pki.stranger_client.key)
    link = channel(mtls_market.address, tls_ca=pki.ca.cert, client_cert=intruder)
    with (
        MarketClient(mtls_market.address, timeout_s=5, grpc_channel=link) as client,
        pytest.raises(MarketUnavailable),
    ):
        client.list_providers()
    link.close()


def test_mtls_serves_a_client_with_a_certificate_of_its_ca(
    pki: Pki, mtls_market: MarketProcess
) -> None:
    link = channel(
        mtls_market.address, tls_ca=pki.ca.cert, client_cert=(pki.client.cert, pki.client.key)
    )
    with MarketClient(mtls_market.address, grpc_channel=link) as client:
        assert client.list_providers() == []
    link.close()


# --- refused configurations, in one line ---------------------------------------------------


def test_a_client_ca_without_a_server_certificate_is_refused(pki: Pki, tmp_path: Path) -> None:
    code, lines = refused_start(
        "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "m"),
        "--tls-client-ca", str(pki.ca.cert),
    )  # fmt: skip
    assert code == 1
    assert lines == ["Error: --tls-client-ca needs --tls-cert and --tls-key"]


def test_files_that_are_not_pem_are_refused(pki: Pki, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    base = ("--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "m"))
    code, lines = refused_start(*base, "--tls-cert", str(garbage), "--tls-key", str(pki.server.key))
    assert (code, lines) == (1, [f"Error: --tls-cert {garbage} is not a PEM certificate"])
    code, lines = refused_start(
        *base, "--tls-cert", str(pki.server.cert), "--tls-key", str(garbage)
    )
    assert (code, lines) == (
        1,
        [f"Error: --tls-key {garbage} is not an unencrypted PEM private key"],
    )
    code, lines = refused_start(
        *base, "--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key),
        "--tls-client-ca", str(garbage),
    )  # fmt: skip
    assert (code, lines) == (1, [f"Error: --tls-client-ca {garbage} is not a PEM certificate"])


# --- the provider agent over TLS and mutual TLS -----------------------------------------------


def agent_config(tmp_path: Path, address: str, marketplace_keys: str) -> AgentConfig:
    """The replayed-H100 example, pointed at `address` with these [marketplace] TLS keys."""
    path = tmp_path / "provider.toml"
    example = (EXAMPLES / "provider-h100-replay.toml").read_text()
    path.write_text(f'{example}\n[marketplace]\naddress = "{address}"\n{marketplace_keys}\n')
    return load_config(path)


def register_over(cfg: AgentConfig) -> int:
    """Register the config's provider through the agent's own link; the heartbeat interval."""

    async def register() -> int:
        link = MarketLink(cfg.marketplace.address, Key.generate(), 5.0, tls_settings(cfg))
        try:
            return await link.register(read_inventory(cfg), "https://p.example:8443", "eu-west")
        finally:
            await link.close()

    return asyncio.run(register())


def test_an_agent_registers_over_mutual_tls(
    pki: Pki, mtls_market: MarketProcess, tmp_path: Path
) -> None:
    keys = f'tls_ca = "{pki.ca.cert}"\ntls_cert = "{pki.client.cert}"\ntls_key = "{pki.client.key}"'
    assert register_over(agent_config(tmp_path, mtls_market.address, keys)) > 0
    with (
        MarketClient(mtls_market.address, tls_ca=pki.ca.cert, timeout_s=5) as client,
        pytest.raises(MarketUnavailable),  # the same market turns a certificate-less client away
    ):
        client.list_providers()


def test_an_agent_without_its_certificate_is_turned_away_by_mutual_tls(
    pki: Pki, mtls_market: MarketProcess, tmp_path: Path
) -> None:
    cfg = agent_config(tmp_path, mtls_market.address, f'tls_ca = "{pki.ca.cert}"')
    with pytest.raises(Unavailable):
        register_over(cfg)


def test_agent_tls_keys_are_checked_when_the_config_is_read(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"marketplace\.tls_cert: and tls_key go together"):
        agent_config(tmp_path, "127.0.0.1:1", f'tls_cert = "{pki.client.cert}"')
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    with pytest.raises(ConfigError, match="is not a PEM file"):
        agent_config(tmp_path, "127.0.0.1:1", f'tls_ca = "{not_pem}"')
    with pytest.raises(ConfigError, match="cannot read"):
        agent_config(tmp_path, "127.0.0.1:1", f'tls_ca = "{tmp_path / "missing.pem"}"')


def test_the_tenant_cli_shows_its_certificate_to_a_mutual_tls_market(
    pki: Pki, mtls_market: MarketProcess
) -> None:
    env = {
        "GPUMARKET_MARKET": mtls_market.address,
        "GPUMARKET_TLS_CA": str(pki.ca.cert),
        "GPUMARKET_TLS_CERT": str(pki.client.cert),
        "GPUMARKET_TLS_KEY": str(pki.client.key),
    }
    listed = CliRunner().invoke(cli, ["providers", "--json"], env=env, catch_exceptions=False)
    assert listed.exit_code == 0, listed.output
    admin_key = str(mtls_market.data_dir / "admin.pem")
    audited = CliRunner().invoke(
        cli, ["market", "audit", "--admin-key", admin_key], env=env, catch_exceptions=False
    )
    assert audited.exit_code == 0 and "books balanced" in audited.output, audited.output
    half = {**env, "GPUMARKET_TLS_KEY": ""}
    refused = CliRunner().invoke(cli, ["providers"], env=half, catch_exceptions=False)
    assert refused.exit_code == 2 and "--tls-cert and --tls-key go together" in refused.output
