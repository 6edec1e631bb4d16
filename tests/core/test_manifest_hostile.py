"""Hostile manifests: each is refused in milliseconds, in bounded memory, with one short line
that names its line, whatever it does with aliases, merges, nesting, keys or long text.

The bounds are counted while the YAML is composed (marketplace/core/manifest/yaml_lines.py),
an alias costing the whole size of what it names, so nothing is ever expanded to be measured.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable

import pytest

from marketplace.core import limits
from marketplace.core.manifest import ManifestError, parse_manifest
from marketplace.server.testing import gpu_sdl

BASE = gpu_sdl().decode()


def in_restart(value: str) -> str:
    """The valid one-group SDL with `value` (YAML text) as gpumarket.restart, where the parser
    quotes the value in its error: the place a formatted bomb used to explode."""
    assert "  restart: never\n" in BASE
    return BASE.replace("  restart: never\n", f"  restart: {value}\n")


def laughs(levels: int, fanout: int = 9) -> str:
    """The billion laughs in flow style: each level a list of `fanout` aliases of the last."""
    items = ['&a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        items.append(f"&a{i} [" + ",".join([f"*a{i - 1}"] * fanout) + "]")
    return "[" + ", ".join(items) + "]"


def mapping_laughs(levels: int) -> str:
    items = ["&m0 {a: lol, b: lol, c: lol, d: lol, e: lol, f: lol, g: lol, h: lol}"]
    for i in range(1, levels):
        keys = ", ".join(f"k{j}: *m{i - 1}" for j in range(8))
        items.append(f"&m{i} {{{keys}}}")
    return "[" + ", ".join(items) + "]"


def merge_laughs(levels: int) -> str:
    """Merge keys (<<) that pull in the level below, many times over."""
    items = ["&m0 {" + ", ".join(f"k{j}: lol" for j in range(10)) + "}"]
    for i in range(1, levels):
        merged = ", ".join(f"s{j}: {{<<: *m{i - 1}}}" for j in range(10))
        items.append(f"&m{i} {{{merged}}}")
    return "[" + ", ".join(items) + "]"


def long_text() -> str:
    """One long scalar named 60 times: 6 MB of text from 100 KB of manifest."""
    return "[&s " + "x" * 100_000 + ", " + ", ".join(["*s"] * 60) + "]"


HOSTILE: dict[str, Callable[[], str]] = {
    "billion laughs (1 KB)": lambda: in_restart(laughs(9)),
    "billion laughs, wider and deeper": lambda: in_restart(laughs(12, fanout=12)),
    "mapping laughs": lambda: in_restart(mapping_laughs(9)),
    "merge-key laughs": lambda: in_restart(merge_laughs(8)),
    "recursive alias (list)": lambda: in_restart("&r [*r]"),
    "recursive alias (mapping)": lambda: in_restart("&r {x: *r}"),
    "long scalar through aliases": lambda: in_restart(long_text()),
    "deep flow nesting": lambda: in_restart("[" * 100_000 + "]" * 100_000),
    "deep block nesting": lambda: "a:\n" + "".join("  " * i + "- \n" for i in range(1, 300)),
    "deep mapping nesting": lambda: in_restart("{a: " * 50_000 + "x" + "}" * 50_000),
    "many keys": lambda: "version: '2.0'\nx:\n" + "".join(f"  k{i}: v\n" for i in range(50_000)),
    "many list items": lambda: in_restart("[" + ",".join(["1"] * 200_000) + "]"),
    # lines were once indexed up front: 47 MB and most of a second for a MiB of newlines
    "a MiB of newlines, then an error": lambda: BASE + "\n" * 1_040_000 + "zz: 1\n",
    "a MiB of lone carriage returns": lambda: "\r" * (limits.MAX_MANIFEST_BYTES - 1),
    "a manifest over the byte limit": lambda: BASE + "#" * limits.MAX_MANIFEST_BYTES,
}


def refused(text: str) -> tuple[ManifestError, float, int]:
    """The error, the CPU seconds it took (this process's own, so that other work on a loaded
    box does not count) and the peak bytes allocated while parsing."""
    tracemalloc.start()
    started = time.process_time()
    try:
        with pytest.raises(ManifestError) as caught:
            parse_manifest(text, "hostile.yaml")
        took = time.process_time() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return caught.value, took, peak


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_manifest_is_refused_fast_in_bounded_memory(name: str) -> None:
    text = HOSTILE[name]()
    error, took, peak = refused(text)
    message = str(error)
    assert "\n" not in message and len(message) < 500, message
    assert message.startswith("hostile.yaml:"), message
    # a bound on work, not a speed test: the slowest cases take 0.2-0.5 s of CPU under
    # tracemalloc on a slow box; a parse that blew up with its input would take many seconds
    assert took < 2.0, f"{name}: {took * 1000:.0f} ms"
    # what parsing allocated beyond the text itself: the composer stops early
    assert peak < 4 * len(text) + 30 * 2**20, f"{name}: peak {peak / 2**20:.0f} MiB"


def test_the_one_kilobyte_bomb_is_refused_in_milliseconds_naming_its_line() -> None:
    text = in_restart(laughs(9))
    assert len(text) < 1100  # the red team's bomb: ~1 KB, 9^9 "lol"s if expanded
    error, took, _ = refused(text)
    assert took < 0.05, f"{took * 1000:.1f} ms"
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "restart:" in row)
    assert error.line == line
    assert "manifest too large" in error.message
    assert f"more than {limits.MAX_MANIFEST_NODES:,} YAML nodes" in error.message


def test_recursive_alias_names_itself() -> None:
    error, _, _ = refused(in_restart("&loop [*loop]"))
    assert "recursive alias *loop" in error.message


def test_deep_nesting_names_the_bound() -> None:
    error, _, _ = refused(in_restart("[" * 1000 + "]" * 1000))
    assert f"nested too deeply (more than {limits.MAX_MANIFEST_DEPTH} levels)" in error.message


def test_a_huge_value_is_cut_before_it_is_quoted() -> None:
    # one 500 KB scalar where the parser quotes the value: the message quotes 40 characters
    started = time.process_time()
    error, _, _ = refused(in_restart("x" * 500_000))
    assert time.process_time() - started < 0.5
    assert "invalid value 'xxxxxxxx" in error.message
    assert len(error.message) < 200


def test_a_value_under_the_bounds_with_aliases_is_quoted_short() -> None:
    # 3 levels (820 nodes) is under every bound: the quoted value must still be short.
    error, took, _ = refused(in_restart(laughs(3)))
    assert "invalid value <a list of 3>" in error.message
    assert took < 0.05


def test_many_problems_are_cut_to_the_first_ones() -> None:
    services = "".join(f"  s{i}:\n    image: x\n    expose: 1\n" for i in range(300))
    error, _, _ = refused(BASE.replace("services:\n", "services:\n" + services, 1))
    assert len(error.errors) <= 20


def test_many_warnings_are_cut() -> None:
    bare = "    env:\n" + "".join(f"      - NOVALUE{i}\n" for i in range(3000))
    text = BASE.replace("  train:\n", "  train:\n" + bare, 1)
    assert text != BASE
    started = time.process_time()
    manifest = parse_manifest(text)
    assert time.process_time() - started < 1.0
    assert len(manifest.warnings) == 51
    assert manifest.warnings[-1].endswith("more warnings not shown")


def test_many_unknown_keys_are_cut() -> None:
    unknown = "".join(f"    unknown{i}: 1\n" for i in range(3000))
    text = BASE.replace("  train:\n    image:", "  train:\n" + unknown + "    image:", 1)
    started = time.process_time()
    error, _, _ = refused(text)
    assert time.process_time() - started < 1.0
    assert len(error.errors) <= 20


def test_aliases_within_the_bounds_still_work() -> None:
    text = BASE.replace("memory: {size: 1Gi}", "memory: &one-gi {size: 1Gi}").replace(
        "storage: {size: 1Gi}", "storage: *one-gi"
    )
    assert "*one-gi" in text
    manifest = parse_manifest(text)
    unit = manifest.groups[0].resources[0]
    assert unit.memory_bytes == 1024**3 and unit.storage[0].size_bytes == 1024**3


@pytest.mark.parametrize("amount", ["0.0016", "0.000001", "0.0000000000000000001"])
def test_a_price_under_one_micro_unit_per_hour_is_refused(amount: str) -> None:
    text = BASE.replace("amount: 5000}", f"amount: {amount}}}")
    with pytest.raises(ManifestError) as caught:
        parse_manifest(text)
    assert "under 1 micro-unit per hour" in caught.value.message
    assert "0 would mean no cap" in caught.value.message
    assert "use at least 0.0017" in caught.value.message


def test_the_least_price_converts_to_one_micro_unit_per_hour() -> None:
    manifest = parse_manifest(BASE.replace("amount: 5000}", "amount: 0.0017}"))
    assert manifest.groups[0].max_price_per_hour == 1


def test_shown_cuts_before_formatting() -> None:
    big = ["x" * 1000] * 100_000  # repr() would be 100 MB
    started = time.process_time()
    assert limits.shown(big) == "<a list of 100000>"
    assert limits.shown("y" * 10**7) == "'" + "y" * 40 + "'…"
    assert limits.shown(2**10_000) == "<int>"
    assert limits.shown(12) == "12" and limits.shown("ok") == "'ok'"
    assert time.process_time() - started < 0.05


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("    dc:\n", "    " + "d" * 500 + ":\n", "invalid placement name 'dddd"),
        ("    dc:\n", '    "d\\x1bc":\n', "invalid placement name"),
        ("{region: eu}", "{region: " + "e" * 5000 + "}", "attribute value 'eeee"),
        ("{region: eu}", '{region: "e\\nu"}', "must be printable"),
        (
            "      attributes: {region: eu}",
            "      signedBy: {anyOf: [" + "a" * 500 + "]}\n      attributes: {region: eu}",
            "invalid auditor 'aaaa",
        ),
    ],
)
def test_what_every_provider_sees_of_a_group_is_bounded(old: str, new: str, expected: str) -> None:
    text = BASE.replace(old, new, 1)
    assert text != BASE
    with pytest.raises(ManifestError) as caught:
        parse_manifest(text)
    assert any(expected in str(error) for error in caught.value.errors), caught.value
    assert all(len(str(error)) < 400 for error in caught.value.errors)


def test_an_error_after_a_mib_of_newlines_names_its_own_line() -> None:
    text = BASE + "\n" * 1_040_000 + "zz: 1\n"
    error, _, _ = refused(text)
    assert error.line == text.count("\n") and error.path == "zz"


@pytest.mark.parametrize(
    ("old", "key_at"),
    [
        ("{region: eu}", "{region: eu, ? KEY\n: x}"),  # an attribute key
        ("  train:\n    image:", "  train:\n    ? KEY\n    : x\n    image:"),  # a service's field
        ("{denom: uact, amount: 5000}", "{denom: uact, amount: 5000, ? KEY\n: x}"),  # a price's
    ],
)
def test_a_huge_key_is_cut_in_the_path_as_in_the_message(old: str, key_at: str) -> None:
    """A 100 KB key is named by its first characters in the error's path, '…' marking the cut,
    as the message quotes it: a hostile manifest must not make us echo it back."""
    key = "k" * 100_000
    text = BASE.replace(old, key_at.replace("KEY", key), 1)
    assert text != BASE
    error, _, _ = refused(text)
    [problem] = [e for e in error.errors if "kkkk" in e.path]
    assert f".{'k' * limits.MAX_PATH_KEY}…" in problem.path
    assert len(str(problem)) < 400
