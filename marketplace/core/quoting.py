"""How a user's value or key is named in an error message: cut before it is formatted, so a
hostile 1 MiB value costs no more than a short one and is never echoed back whole.

Its own module, outside the compiled core (simulator/compiled.py): the simulator's scenario and
sweep readers name keys with it before a compiled build is activated, which must happen before
any compiled module loads.
"""

from __future__ import annotations

MAX_ERROR_VALUE = 40  # characters of a value quoted in an error message
# characters of a key in an error's field path: the longest key any input takes (an attribute
# key's 128), so a valid key shows whole and a hostile one is cut
MAX_PATH_KEY = 128


def shown(value: object, limit: int = MAX_ERROR_VALUE) -> str:
    """A value quoted for an error message, at most about `limit` characters, cut BEFORE it is
    formatted: an aliased YAML value or a 1 MiB string costs no more than a short one."""
    if isinstance(value, str):
        cut = value[: limit + 1]
        text = repr(cut[:limit]) + ("…" if len(cut) > limit else "")
    elif value is None or isinstance(value, bool | int | float):
        text = repr(value) if not isinstance(value, int) or value.bit_length() < 200 else "<int>"
    elif isinstance(value, list | tuple):
        text = f"<a list of {len(value)}>"
    elif isinstance(value, dict):
        text = f"<a mapping of {len(value)}>"
    else:
        text = f"<{type(value).__name__}>"
    return text[: limit + 8]


def clipped(text: str, limit: int = MAX_ERROR_VALUE) -> str:
    """shown() without the quotes, for text a message names as it is."""
    return text[:limit] + ("…" if len(text) > limit else "")


def path_key(key: object) -> str:
    """A user's mapping key as an error's field path names it: cut at MAX_PATH_KEY ('…' marking
    the cut: a hostile 100 KB key is not echoed back); as it is when it shows as itself, else
    quoted (empty, blank at an end, a control character), so that a path still names a field."""
    if not isinstance(key, str):
        return shown(key, MAX_PATH_KEY)
    cut = key[: MAX_PATH_KEY + 1]
    if cut and cut == cut.strip() and cut.isprintable():
        return clipped(cut, MAX_PATH_KEY)
    return shown(cut, MAX_PATH_KEY)
