"""The error tree of the market's rules. The wire edge maps each class to one gRPC status."""

from __future__ import annotations


class MarketError(Exception):
    """Base of every error the market's rules raise on purpose."""


class InvalidArgument(MarketError):
    """The request is malformed or breaks a rule (bad manifest, bad price...)."""


class NotFound(MarketError):
    """The named object does not exist."""


class AlreadyExists(MarketError):
    """The object exists already (e.g. a second bid from one provider on one order)."""


class PermissionDenied(MarketError):
    """The signer does not own what it tries to act on."""


class Unauthenticated(MarketError):
    """The signature is missing, forged, tampered, replayed or stale."""


class FailedPrecondition(MarketError):
    """The object is not in a state that allows this (bid on a closed order...)."""


class InsufficientFunds(FailedPrecondition):
    """An account or escrow does not hold enough."""


class Ineligible(FailedPrecondition):
    """A bid the auction refuses; `reason` says why in words a provider can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ResourceExhausted(MarketError):
    """The market holds as much of this kind of work as it takes at once (manifests waiting
    to be parsed): send it again, newly signed, in a moment."""


class Unavailable(MarketError):
    """The market could not be reached or did not answer in time: the request may succeed if
    tried again later (every other MarketError is final)."""
