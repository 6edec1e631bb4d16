"""Pages of a listing: page_size bounded, page_token opaque (an offset into the listing as the
caller may see it, oldest first). A listing only grows at its end, so following the tokens
visits every record that was there when the first page was read."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import TypeVar

from marketplace.core.errors import InvalidArgument
from marketplace.core.limits import whole_number

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_PREFIX = "p1:"


def page_size(requested: int) -> int:
    """The page size to use: the default for 0 (or less), at most MAX_PAGE_SIZE."""
    return DEFAULT_PAGE_SIZE if requested <= 0 else min(requested, MAX_PAGE_SIZE)


def _offset(token: str) -> int:
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    offset = whole_number(text.removeprefix(_PREFIX), 12)
    if not text.startswith(_PREFIX) or offset is None:
        raise InvalidArgument("bad page_token: pass the next_page_token of the previous page")
    return offset


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"{_PREFIX}{offset}".encode()).decode()


def page_end(size: int, token: str) -> int:
    """Where the page `size`, `token` ends in its listing: how many of the listing's first
    records it needs (InvalidArgument for a bad token, before any work is spent on it)."""
    return _offset(token) + page_size(size)


def page(items: Sequence[T], size: int, token: str) -> tuple[list[T], str]:
    """One page of `items` and the token of the next ("" when this is the last)."""
    start = _offset(token)
    end = start + page_size(size)
    return list(items[start:end]), _token(end) if end < len(items) else ""
