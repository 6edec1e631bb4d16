"""What a provider reads about itself: its GPUs' latest telemetry and its declines by kind.

The telemetry comes up the provider stream with the agent's heartbeats (Provider.
ReportTelemetry; core/telemetry.py keeps the newest reading per GPU, in memory). The declines
are counted as the market records them (core/declines.py), from this process's start, the
open orders' declines first. Provider.GetProviderStatus reads both, signed: only the provider's
own key may (another key is refused PERMISSION_DENIED, the admin's included: an operator's
hardware is its own business; DESIGN.md, decision 10).
"""

from __future__ import annotations

from marketplace.api.telemetry import provider_status_to_proto
from marketplace.api.v1 import market_pb2 as pb
from marketplace.core.declines import DeclineTally
from marketplace.core.errors import PermissionDenied
from marketplace.core.limits import check_address
from marketplace.core.state import Changes
from marketplace.core.telemetry import GpuTelemetry, TelemetryBook, TelemetryReading
from marketplace.server.app import MarketApp


class ProviderStatusBook:
    def __init__(self, app: MarketApp) -> None:
        self.app = app
        self.telemetry = TelemetryBook()
        self.declines = DeclineTally(app.clock.now_ms())
        for declines in app.market.state.declines.values():
            self.declines.add(declines)
        app.observers.append(self._observe)

    def _observe(self, changes: Changes) -> None:
        if changes.declines:
            self.declines.add(changes.declines)

    def record(
        self, provider: str, gpus: tuple[GpuTelemetry, ...], read_at_ms: int
    ) -> TelemetryReading:
        """A registered provider's newest reading (NotFound for an unregistered signer)."""
        self.app.market.get_provider(provider)
        return self.telemetry.record(provider, gpus, read_at_ms, self.app.clock.now_ms())

    def read(self, signer: str, asked: str) -> pb.ProviderStatus:
        """`asked`'s status ("" = the signer's), for the signer only."""
        provider = asked or signer
        if provider != signer:
            check_address("provider", provider)
            raise PermissionDenied(
                f"{provider}'s telemetry and declines are readable by that provider only"
            )
        self.app.market.get_provider(provider)  # NotFound: not a registered provider
        return provider_status_to_proto(
            provider,
            self.telemetry.latest(provider),
            self.declines.of(provider),
            self.declines.since_ms,
        )
