"""A mutation fuzzer over the 100 valid SDLs of the awesome-akash sample (and six seeds with
what it lacks: gpumarket's own keys, a gang, reclamation, SDL 2.2, the examples).

Each example takes one real manifest and breaks it the ways files break in the wild: in its
data (a key deleted, duplicated, renamed or retyped; a value swapped for another type, made huge,
unicode, or nested deep) or in its bytes (tabs, a BOM, CRLF or lone CR, bytes that are not
UTF-8, NEL and U+2028 line breaks, NUL, an alias bomb, an undefined alias, truncation, an empty
file, a second YAML document, a line indented wrong). Whatever comes out, a user sees one of two
things: the manifest is accepted, and the market's own bounds take what it asks for; or a
ManifestError whose every problem is one line naming a field (or saying what is wrong with the
file as a whole) at a line the file has. Never another exception, never a second of CPU, never
unbounded memory.
"""

from __future__ import annotations

import copy
import csv
import os
import re
import time
import tracemalloc
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketplace.core import limits
from marketplace.core.manifest import ManifestError, parse_manifest
from marketplace.core.manifest.update import plan_update
from tests.helpers import CORPUS_SDL, EXAMPLES

INDEX = csv.DictReader((CORPUS_SDL / "_index.csv").read_text().splitlines())
VALID = sorted(r["file"] for r in INDEX if r["yaml_ok"] == "1" and r["schema_valid"] == "1")
RAW = {name: (CORPUS_SDL / name).read_bytes() for name in VALID}
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def with_extensions() -> dict[str, bytes]:
    """What the sample lacks: gpumarket's own keys (every job setting, a gang), reclamation,
    SDL 2.2 multi-denom pricing, and the example manifests a new user starts from."""
    base = yaml.safe_load(RAW["Grav__deploy.yaml"])
    full = copy.deepcopy(base)
    full["gpumarket"] = {
        "kind": "training",
        "max_runtime": "6h",
        "restart": "on-failure",
        "min_reliability": 0.95,
        "checkpoint": "s3://bucket/run-7",
        "tier": "spot",
        "auction": {"bid_window": "10s", "payment": "second-price", "manual": False},
    }
    full["reclamation"] = {"min_window": "1h"}
    gang = copy.deepcopy(base)
    gang["gpumarket"] = {
        "kind": "training",
        "gang": {"nodes": 4, "min_bandwidth": "10Gbps", "gradient_size": "2G"},
    }
    multi_denom = copy.deepcopy(base)
    multi_denom["version"] = "2.2"
    for placement in multi_denom["profiles"]["placement"].values():
        for profile, coin in placement["pricing"].items():
            placement["pricing"][profile] = [coin, {"denom": "uakt", "amount": 5}]
    seeds = {
        f"extensions-{name}": yaml.safe_dump(doc, sort_keys=False).encode()
        for name, doc in (("all", full), ("gang", gang), ("2.2", multi_denom))
    }
    for example in ("inference.yaml", "training.yaml", "training-h100.yaml"):
        seeds[f"example-{example}"] = (EXAMPLES / example).read_bytes()
    return seeds


RAW.update(with_extensions())
VALID = sorted(RAW)
DOCS = {name: yaml.safe_load(raw) for name, raw in RAW.items()}

# What a problem about the file as a whole (no field to name) may say.
WHOLE_FILE = re.compile(
    r"^(invalid YAML|not UTF-8|manifest too large|empty manifest|manifest is nested"
    r"|expected a mapping \(version|cannot read manifest)"
)
# A long hunt: GPUMARKET_FUZZ_EXAMPLES=20000 python -m pytest tests/core/test_manifest_mutations.py
EXAMPLES_PER_RUN = int(os.environ.get("GPUMARKET_FUZZ_EXAMPLES", "300"))
CPU_SECONDS = 1.0
PEAK_BYTES = 64 * 1024 * 1024

WEIRD: list[object] = [
    None,
    True,
    0,
    -1,
    2**64,
    10**40,
    1.5,
    float("inf"),
    float("nan"),
    "",
    " ",
    "x" * 100_000,
    "é" * 300,
    "\u202e\u200b",
    "\t",
    "*",
    "0x10",
    "1e999",
    "-5Gi",
    "80Gi",
    "100m",
    "/",
    [],
    {},
    [[[[[[[[1]]]]]]]],
    {"a": {"b": {"c": None}}},
]


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*prefix, index))
    return found


def mutate_data(draw: st.DrawFn, doc: Any) -> Any:
    path = draw(st.sampled_from(paths(doc)))
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    action = draw(st.sampled_from(["delete", "retype", "rename", "swap", "huge", "nest", "dup"]))
    if action == "delete":
        del parent[last]
    elif action == "retype":
        parent[last] = copy.deepcopy(draw(st.sampled_from(WEIRD)))
    elif action == "rename" and isinstance(parent, dict):
        renames: list[object] = [str(last).upper(), f"{last}_", "é", "", " ", "<<", 7, None, True]
        parent[draw(st.sampled_from(renames))] = parent.pop(last)
    elif action == "swap":
        value = parent[last]
        parent[last] = {"k": value} if isinstance(value, list) else [value]
    elif action == "huge":
        parent[last] = draw(st.sampled_from([10**40, "9" * 5_000, 1e308, "1" + "0" * 400 + "Gi"]))
    elif action == "nest":
        value = parent[last]
        for _ in range(draw(st.sampled_from([3, 40, 80]))):
            value = [value]
        parent[last] = value
    elif action == "dup" and isinstance(parent, dict):
        parent[f"{last}2"] = copy.deepcopy(parent[last])
    else:
        parent[last] = draw(st.text(max_size=20))
    return doc


BOMB = (
    b'[&a0 ["l","l","l","l","l","l","l","l","l"], '
    + b", ".join(b"&a%d [" % k + b",".join([b"*a%d" % (k - 1)] * 9) + b"]" for k in range(1, 9))
    + b"]"
)
NOT_UTF8 = [b"\xff", b"\xc3", b"\x80\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]


def mutate_bytes(draw: st.DrawFn, raw: bytes) -> bytes:
    lines = raw.split(b"\n")
    i = draw(st.integers(0, len(lines) - 1))
    action = draw(
        st.sampled_from(
            [
                "tab", "bom", "crlf", "cr", "not-utf8", "empty", "two-docs", "truncate",
                "dup-line", "ls", "nel", "nul", "bomb", "alias", "utf16", "indent", "dedent",
            ]
        )
    )  # fmt: skip
    if action == "tab":
        lines[i] = lines[i].replace(b"  ", b"\t", 1)
    elif action == "bom":
        return b"\xef\xbb\xbf" + raw
    elif action == "crlf":
        return raw.replace(b"\n", b"\r\n")
    elif action == "cr":
        return raw.replace(b"\n", b"\r")
    elif action == "not-utf8":
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.sampled_from(NOT_UTF8)) + raw[at:]
    elif action == "empty":
        return draw(st.sampled_from([b"", b"\n", b"  \n\n", b"---\n", b"~\n", b"...\n", b"# x\n"]))
    elif action == "two-docs":
        return raw + b"\n---\n" + draw(st.sampled_from([raw, b"x: 1\n", b""]))
    elif action == "truncate":
        return raw[: draw(st.integers(0, len(raw)))]
    elif action == "dup-line":
        lines.insert(i, lines[i])
    elif action == "ls":
        lines[i] += "\u2028".encode()
    elif action == "nel":
        lines[i] += "\x85".encode()
    elif action == "nul":
        lines[i] += b"\x00"
    elif action == "bomb":
        value = re.search(rb": \S.*$", lines[i])
        lines[i] = (lines[i][: value.start()] + b": " + BOMB) if value else lines[i] + BOMB
    elif action == "alias":
        lines[i] += b" *undefined"
    elif action == "utf16":
        return b"\xff\xfe" + raw.decode("utf-8", "replace").encode("utf-16-le")
    elif action == "indent":
        lines[i] = b"  " + lines[i]
    elif action == "dedent":
        lines[i] = lines[i][2:]
    return b"\n".join(lines)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(VALID))
    raw = RAW[name]
    if draw(st.booleans()):
        doc = copy.deepcopy(DOCS[name])
        for _ in range(draw(st.integers(1, 3))):
            doc = mutate_data(draw, doc)
        text = yaml.dump(doc, Dumper=DUMPER, allow_unicode=True, sort_keys=False)
        raw = text.encode("utf-8", "surrogatepass")
    for _ in range(draw(st.integers(0 if raw != RAW[name] else 1, 2))):
        raw = mutate_bytes(draw, raw)
    return name, raw


def editor_lines(raw: bytes) -> int:
    """How many lines an editor shows for the file (\\n, \\r\\n or \\r end one)."""
    text = raw.decode("utf-8", "replace")
    return max(1, len(re.split(r"\r\n|\r|\n", text.removesuffix("\n").removesuffix("\r"))))


def assert_user_sees_a_clear_outcome(raw: bytes, source: str = "m.yaml") -> None:
    tracemalloc.start()
    started = time.process_time()
    try:
        manifest = parse_manifest(raw, source)
    except ManifestError as err:
        spent = time.process_time() - started
        for problem in err.errors:
            shown = str(problem)
            assert "\n" not in shown and shown.startswith(f"{source}:"), shown
            assert "internal parser error" not in shown, shown
            assert problem.path or WHOLE_FILE.match(problem.message), shown
            assert 1 <= problem.line <= editor_lines(raw), (shown, editor_lines(raw))
    else:
        spent = time.process_time() - started
        assert manifest.groups
        for warning in manifest.warnings:  # each one line, at a line the file has
            assert "\n" not in warning, warning
            where = re.match(rf"{re.escape(source)}:(\d+): ", warning)
            assert where is None or 1 <= int(where.group(1)) <= editor_lines(raw), warning
        assert len(manifest.groups) <= limits.MAX_GROUPS
        for group in manifest.groups:  # what Market.create_deployment checks of a group
            limits.check_group_texts(group)
            for text in (*group.needs, *(v.name for u in group.resources for v in u.storage)):
                limits.check_text("attribute value", text)  # what else every provider sees
            assert 1 <= group.max_price_per_hour <= limits.MAX_PRICE_PER_HOUR
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert spent < CPU_SECONDS, f"{spent:.2f} s of CPU"
    assert peak < PEAK_BYTES, f"{peak:,} bytes"


@settings(
    max_examples=EXAMPLES_PER_RUN, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(mutated())
def test_a_mutated_real_manifest_is_accepted_or_refused_clearly(case: tuple[str, bytes]) -> None:
    assert_user_sees_a_clear_outcome(case[1])


# --- the classes the fuzzer found, each pinned by the manifest that showed it -----------------


def corpus(name: str) -> bytes:
    return RAW[name]


def line_of(raw: bytes, text: bytes) -> int:
    return raw.split(b"\n").index(text) + 1


@pytest.mark.parametrize(
    ("name", "break_it", "line", "says"),
    [
        # a YAML line break an editor does not show (NEL) moved every later line down
        (
            "Yearn.finance__deploy.yaml",
            lambda raw: raw.replace(b"deployment:", "deployment:\x85".encode()) + b"\nz: 1\n",
            lambda raw: line_of(raw, b"z: 1"),
            "z: unexpected field 'z'",
        ),
        # an error at the end of the stream named a line after the last
        (
            "uma-protocol__deploy.yaml",
            lambda raw: raw.rstrip(b"\n") + b"\n\ndeploym",
            lambda raw: line_of(raw, b"deploym"),
            "invalid YAML: could not find expected ':'",
        ),
        (
            "chia-bladebit-disk__configs__bladebit-disk-10-32-2000.yaml",
            lambda raw: b"---\n  ",
            lambda raw: 2,
            "empty manifest",
        ),
        # a key "" named no field
        (
            "whisper-gui-gpu__deploy.yaml",
            lambda raw: raw + b'\n"": 1\n',
            lambda raw: line_of(raw, b'"": 1'),
            "'': unexpected field ''",
        ),
        # a second document: libyaml's "but found another document" said plainly
        (
            "Grav__deploy.yaml",
            lambda raw: raw + b"\n---\nx: 1\n",
            lambda raw: line_of(raw, b"x: 1") - 1,
            "more than one YAML document",
        ),
    ],
)
def test_found_by_the_fuzzer(name: str, break_it: Any, line: Any, says: str) -> None:
    raw = break_it(RAW[name])
    with pytest.raises(ManifestError) as caught:
        parse_manifest(raw, "m.yaml")
    error = caught.value.errors[0]
    assert says in str(error)
    assert error.line == line(raw), str(error)
    assert_user_sees_a_clear_outcome(raw)


def test_line_breaks_no_editor_shows_do_not_move_the_lines_after_them() -> None:
    raw = RAW["Grav__deploy.yaml"].replace(
        b"    image: evns/grav\n",
        '    image: evns/grav\n    env:\n      - "A=b\u2028c\u2029d\x85e"\n'.encode(),
    )
    parse_manifest(raw, "m.yaml")  # valid: the breaks are inside a quoted value
    broken = raw.replace(b"profiles:", b"profiles:\n  ghost: 1", 1)
    with pytest.raises(ManifestError) as caught:
        parse_manifest(broken, "m.yaml")
    assert caught.value.path == "profiles.ghost"
    assert caught.value.line == line_of(broken, b"  ghost: 1"), str(caught.value)


# --- gpumarket update: plan_update over mutated second versions ---------------------------------

PARSED = {name: parse_manifest(raw, name) for name, raw in RAW.items()}


def targeted_edit(draw: st.DrawFn, doc: Any) -> Any:
    """An edit a tenant makes to a running manifest: some an update may carry (image, env,
    command, args, credentials), some it may not (resources, pricing, placement, exposes,
    architecture, reclamation), and some that break the file."""
    services = doc["services"]
    name = draw(st.sampled_from(sorted(services)))
    service = services[name]
    profile = draw(st.sampled_from(sorted(doc["profiles"]["compute"])))
    resources = doc["profiles"]["compute"][profile]["resources"]
    edit = draw(
        st.sampled_from(
            [
                "image", "env", "command", "args", "credentials", "cpu", "arch", "count",
                "reclamation", "accept", "permissions", "price", "attribute",
            ]
        )
    )  # fmt: skip
    if edit == "image":
        service["image"] = draw(st.sampled_from(["nginx:2", "ghcr.io/x/y:1", "Bad Image", ""]))
    elif edit == "env":
        service["env"] = [*(service.get("env") or []), f"SECRET_TOKEN={draw(st.text(max_size=8))}"]
    elif edit == "command":
        service["command"] = draw(st.sampled_from([["sh", "-c"], [], None, "sh"]))
    elif edit == "args":
        service["args"] = [draw(st.text(max_size=30))]
    elif edit == "credentials":
        service["credentials"] = {"host": "r.io", "username": "u", "password": "hunter2secret"}
    elif edit == "cpu":
        resources["cpu"]["units"] = draw(st.sampled_from([0.25, 2, "3", "100m"]))
    elif edit == "arch":
        resources["cpu"]["attributes"] = {"arch": draw(st.sampled_from(["amd64", "arm64"]))}
    elif edit == "count":
        for placements in doc["deployment"].values():
            for entry in placements.values():
                entry["count"] = draw(st.integers(1, 3))
    elif edit == "reclamation":
        doc["reclamation"] = {"min_window": draw(st.sampled_from(["1h", "2h", "30m"]))}
    elif edit == "accept":
        for expose in service.get("expose") or []:
            expose["accept"] = ["new.example.com"]
    elif edit == "permissions":
        service.setdefault("params", {})["permissions"] = {"read": ["logs"]}
    elif edit == "price":
        for placement in doc["profiles"]["placement"].values():
            for price in placement["pricing"].values():
                for coin in price if isinstance(price, list) else [price]:  # SDL 2.2: a list
                    coin["amount"] = draw(st.sampled_from([1, 999, 5000, 123456]))
    else:
        for placement in doc["profiles"]["placement"].values():
            placement["attributes"] = {"region": draw(st.sampled_from(["us", "eu"]))}
    return doc


@st.composite
def second_versions(draw: st.DrawFn) -> tuple[str, str]:
    name = draw(st.sampled_from(VALID))
    doc = copy.deepcopy(DOCS[name])
    for _ in range(draw(st.integers(1, 2))):
        doc = targeted_edit(draw, doc)
    if draw(st.integers(0, 3)) == 0:  # now and then, a break of any kind on top
        doc = mutate_data(draw, doc)
    return name, yaml.dump(doc, Dumper=DUMPER, allow_unicode=True, sort_keys=False)


SECRETS = ("SECRET_TOKEN=", "hunter2secret")


@settings(
    max_examples=EXAMPLES_PER_RUN * 2 // 3,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(second_versions())
def test_an_update_plan_is_clear_and_agrees_with_the_market(case: tuple[str, str]) -> None:
    """Every second version is either refused as a manifest (clearly, as above) or planned:
    each change and refusal one short line that shows no secret, and an update the plan allows
    is one the market takes (its groups and job unchanged, Market.update_deployment's check)."""
    name, text = case
    old = PARSED[name]
    try:
        new = parse_manifest(text, "v2.yaml")
    except ManifestError:
        assert_user_sees_a_clear_outcome(text.encode(), "v2.yaml")
        return
    started = time.process_time()
    plan = plan_update(old, new)
    assert time.process_time() - started < CPU_SECONDS
    for line in (*plan.changes, *plan.refusals, plan.reason):
        assert "\n" not in line and len(line) < 2_000, line
        assert not any(secret in line for secret in SECRETS), line
    assert plan.allowed == (not plan.refusals and bool(plan.changes))
    assert bool(plan.reason) != plan.allowed
    if plan.allowed:
        assert new.groups == old.groups and new.job == old.job, plan
        assert new.reclamation_min_window_ms == old.reclamation_min_window_ms
    assert not plan_update(new, new).allowed  # the same manifest again changes nothing


def test_a_new_cpu_architecture_is_refused_by_the_plan_not_found_out_by_the_market() -> None:
    """Found by the update fuzzer (Grav__deploy.yaml with cpu.attributes.arch added and a new
    image): the plan allowed it; the market then refused the whole update for a reason it could
    not name (a group's needs changed)."""
    doc = copy.deepcopy(DOCS["Grav__deploy.yaml"])
    doc["services"]["grav"]["image"] = "evns/grav:2"
    doc["profiles"]["compute"]["grav"]["resources"]["cpu"]["attributes"] = {"arch": "arm64"}
    plan = plan_update(PARSED["Grav__deploy.yaml"], parse_manifest(yaml.safe_dump(doc), "v2"))
    assert not plan.allowed
    assert "what its provider must offer" in plan.reason and "arm64" in plan.reason


def test_a_new_reclamation_window_is_refused() -> None:
    old = copy.deepcopy(DOCS["Grav__deploy.yaml"])
    old["reclamation"] = {"min_window": "1h"}
    new = copy.deepcopy(old)
    new["reclamation"] = {"min_window": "2h"}
    new["services"]["grav"]["image"] = "evns/grav:2"
    plan = plan_update(
        parse_manifest(yaml.safe_dump(old), "v1"), parse_manifest(yaml.safe_dump(new), "v2")
    )
    assert not plan.allowed and plan.reason.startswith("reclamation")


def test_an_update_names_long_env_keys_and_images_in_a_short_line() -> None:
    """Found by the update fuzzer (Chatterbox__backend__deploy.yaml with a 5,000-character env
    entry): the change line quoted every key whole, 5 KB on the wire and in the event."""
    doc = copy.deepcopy(DOCS["Chatterbox__backend__deploy.yaml"])
    service = doc["services"]["chatterbox"]
    service["env"] = [*(service.get("env") or []), "K" * 5_000, *(f"K{i}=v" for i in range(30))]
    service["image"] = "a" * 400
    new = parse_manifest(yaml.safe_dump(doc), "v2.yaml")
    plan = plan_update(PARSED["Chatterbox__backend__deploy.yaml"], new)
    assert plan.allowed
    assert all(len(line) < 400 for line in plan.changes), [len(c) for c in plan.changes]
    assert any("and 21 more" in line for line in plan.changes)
