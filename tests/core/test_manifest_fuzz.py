"""Fuzzing the parser with mutated real manifests: only ManifestError may ever escape."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketplace.core.manifest import ManifestError, parse_manifest
from tests.helpers import BASE, CORPUS_SDL, EXAMPLES

DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
SEEDS = [
    yaml.safe_load(BASE),
    yaml.safe_load((CORPUS_SDL / "DeepSeek-R1__deploy.yaml").read_text()),
    yaml.safe_load((CORPUS_SDL / "torchbench__torchbench_gpu_sdl_cuda12_0.yaml").read_text()),
]

WEIRD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        ["", "-1", "1e999", "NaN", "100m", "0.5", "1Qi", "80Gi", "-5Gi", "∞", "é", "\u202e", "*"]
    ),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*prefix, index))
    return found


def mutate(doc: Any, path: tuple[Any, ...], action: str, value: Any) -> Any:
    if not path:
        return value if action == "replace" else doc
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if action == "drop":
        del parent[last]
    elif action == "replace":
        parent[last] = value
    elif action == "add" and isinstance(parent[last], dict):
        parent[last][str(value)[:10]] = value
    return doc


@st.composite
def mutated(draw: st.DrawFn) -> str:
    doc = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        targets = paths(doc)
        path = draw(st.sampled_from(targets))
        action = draw(st.sampled_from(["drop", "replace", "replace", "add"]))
        doc = mutate(doc, path, action, draw(WEIRD))
    text = yaml.dump(doc, Dumper=DUMPER, allow_unicode=True, sort_keys=False)
    if draw(st.booleans()):  # sometimes break the YAML itself
        cut = draw(st.integers(min_value=0, max_value=len(text)))
        text = text[:cut] + draw(st.sampled_from(["", ":", "[", "\t", "&a *b", "\x00", "- -"]))
    return text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_only_manifest_errors_escape(text: str) -> None:
    try:
        manifest = parse_manifest(text, "fuzz.yaml")
    except ManifestError as err:
        message = str(err)
        assert "\n" not in message
        assert message.startswith("fuzz.yaml:")
        assert "internal parser error" not in message, message
        for each in err.errors:
            assert "\n" not in str(each)
    else:
        assert manifest.groups


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    try:
        parse_manifest(data, "bytes.yaml")
    except ManifestError as err:
        assert "\n" not in str(err)
        assert "internal parser error" not in str(err), str(err)


def test_a_key_holding_a_newline_stays_on_one_line() -> None:
    # found by the fuzzer: the key went into the error's path as it was
    text = (EXAMPLES / "inference.yaml").read_text()
    text = text.replace("services:\n", 'services:\n  "we\\nb":\n    image: x\n', 1)
    with pytest.raises(ManifestError) as caught:
        parse_manifest(text, "one\nline.yaml")
    assert "\n" not in str(caught.value)
    assert "invalid service name" in str(caught.value)
