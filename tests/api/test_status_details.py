"""A status's details: one line, bounded in bytes, whatever the error quoted."""

from __future__ import annotations

import pytest

from marketplace.api.status import MAX_DETAILS_BYTES, details_of
from marketplace.core.errors import InvalidArgument, NotFound


@pytest.mark.parametrize(
    "message",
    [
        "deployment " + "x" * 200_000 + " not found",
        "☃" * 70_000,
        "a\nforged\r\nrow\u2028and\u2029more",
        "é" * (MAX_DETAILS_BYTES // 2) + "x",  # one byte past the limit: cut on a boundary
    ],
)
def test_details_are_one_bounded_line(message: str) -> None:
    details = details_of(NotFound(message))
    assert len(details.encode()) <= MAX_DETAILS_BYTES
    assert not any(c in details for c in "\n\r\u2028\u2029")
    assert " ".join(details.split()).startswith(" ".join(message[:20].split()))


def test_short_details_are_kept_whole() -> None:
    assert details_of(InvalidArgument("manifest:3: image is required")) == (
        "manifest:3: image is required"
    )
    assert details_of(InvalidArgument("")) == "InvalidArgument"
