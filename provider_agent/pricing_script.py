"""The script pricing strategy's process half: run the operator's command with the order as JSON
on stdin, and read the price it prints (marketplace/core/pricing.py has the pure half).
`ScriptPricing` puts it behind the core `Pricing` protocol, beside `ScalePricing`.

A non-zero exit means "do not bid" (as in Akash); a timeout kills the process; anything but a
price on stdout is refused. Every failure is a PricingError whose message says which.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from marketplace.core.matching import Allocation
from marketplace.core.pricing import PricingError, parse_script_price, script_input
from marketplace.core.resources import GroupSpec


def run_price_script(
    command: Sequence[str],
    group: GroupSpec,
    allocation: Allocation,
    tenant: str,
    timeout_s: float,
) -> int:
    """The price per hour (micro-units) the script asks for `group`. Raises PricingError."""
    env = {**os.environ, "GPUMARKET_TENANT": tenant, "GPUMARKET_DENOM": group.denom}
    try:
        done = subprocess.run(
            list(command),
            input=script_input(group, allocation, tenant),
            capture_output=True,
            timeout=timeout_s,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise PricingError(f"price script timed out after {timeout_s:g} s") from None
    except OSError as exc:
        raise PricingError(f"price script could not run: {exc.strerror or exc}") from None
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip().splitlines()
        detail = f": {why[-1][:200]}" if why else ""
        raise PricingError(f"price script declined (exit {done.returncode}){detail}")
    return parse_script_price(done.stdout.decode(errors="replace"))


@dataclass(frozen=True)
class ScriptPricing:
    """Prices by running `command` (blocking for up to `timeout_s`)."""

    command: tuple[str, ...]
    timeout_s: float = 5.0

    def price(self, group: GroupSpec, allocation: Allocation, tenant: str) -> int:
        return run_price_script(self.command, group, allocation, tenant, self.timeout_s)
