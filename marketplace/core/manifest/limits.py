"""Akash's validation limits, from akash-network/chain-sdk
go/node/deployment/v1beta4/validation_config.go, and the attribute-key pattern of its SDL."""

from __future__ import annotations

import re
from decimal import Decimal

from marketplace.core import units

CPU_MIN_MILLIS = 10
CPU_MAX_MILLIS = 384_000
GPU_MAX_UNITS = 24
MEMORY_MIN = units.MI
MEMORY_MAX = 2 * units.TI
VOLUME_MIN = 5 * units.MI
VOLUME_MAX = 32 * units.TI
PRICE_MAX = Decimal(10_000_000)  # per unit, in denom units per block
GROUP_FACTOR = 50  # a group's totals may reach 50× the per-unit maximum
# Go's \w is ASCII (RE2): Python's took "région" and any other letter (hence re.ASCII)
ATTRIBUTE_KEY = re.compile(r"^([a-zA-Z][\w/.\-]{1,126}[\w*]?)$", re.ASCII)
