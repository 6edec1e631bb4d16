"""Every constraint of Akash's published SDL input schema is applied by our parser.

The test walks the schema file itself (../shared/corpus/akash/sdl-input.schema.yaml): for every
constraint it meets (required, enum, pattern, minimum/maximum, minLength, minProperties,
additionalProperties, type, and the conditional rules under allOf/if/then/not) it writes a
manifest that breaks that one constraint, starting from BASE made to use every field the schema
knows. jsonschema confirms the manifest really is schema-invalid; our parser must refuse it, on
one line, naming the field. A constraint the schema gains that the parser ignores fails here.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import jsonschema
import pytest
import yaml

from marketplace.core.manifest import ManifestError, parse_manifest
from marketplace.core.manifest.context import dotted
from tests.helpers import BASE, SHARED

SCHEMA_FILE = SHARED / "corpus" / "akash" / "sdl-input.schema.yaml"
ONE_LINE = re.compile(r"^[^\n]+:\d+: [^\n]+$")
Path = tuple[str | int, ...]
Tree = dict[str, Any]  # JSON read from a schema or manifest file: its shape varies by keyword


class _Yaml12Loader(yaml.SafeLoader):
    """The schema as Go's YAML 1.2 reads it: `off` in an enum is the string "off", not false."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)

SCHEMA: Tree = yaml.load(SCHEMA_FILE.read_text(), Loader=_Yaml12Loader)
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)

# What the schema allows that the parser refuses outright, on purpose (docs/manifest.md)
NOT_WALKED = {"include": "include: is refused; a manifest is one file"}


def full_manifest() -> Tree:
    """BASE, with every optional field of the schema filled in (still schema-valid)."""
    tree: Tree = yaml.safe_load(BASE)
    web = tree["services"]["web"]
    web["credentials"] = {
        "host": "registry.example.com",
        "username": "me",
        "password": "secret-pw",
        "email": "me@example.com",
    }
    web["dependencies"] = [{"service": "web"}]
    expose = web["expose"][0]
    expose["proto"] = "tcp"
    expose["accept"] = ["web.example.com"]
    expose["to"] = [{"global": True, "ip": "myip"}, {"service": "web"}]
    expose["http_options"] = {
        "max_body_size": 1024,
        "read_timeout": 5000,
        "send_timeout": 5000,
        "next_tries": 2,
        "next_timeout": 100,
        "next_cases": ["502"],
        "proxy_buffer_size": 4096,
    }
    web["params"]["storage"]["data"]["readOnly"] = False
    web["params"]["permissions"] = {"read": ["logs"]}
    web["params"]["tee"] = "cpu"
    resources = tree["profiles"]["compute"]["web"]["resources"]
    resources["cpu"]["attributes"] = {"arch": "amd64"}
    tree["profiles"]["placement"]["dc"]["signedBy"]["allOf"] = ["akash1auditor"]
    tree["endpoints"] = {"myip": {"kind": "ip"}}
    tree["reclamation"] = {"min_window": "1h"}
    return tree


FULL = full_manifest()


@dataclass(frozen=True)
class Case:
    """One broken constraint: where it is in the schema, what was done, where the error goes."""

    constraint: str  # schema pointer and keyword, e.g. definitions/portNumber:maximum
    path: Path  # data path that was changed
    change: str  # "set" | "delete" | "add"
    value: object = None
    expect: Path = ()  # the error must name this path (or a field under it)

    @property
    def id(self) -> str:
        where, _, keyword = self.constraint.rpartition(":")
        short = "/".join(where.split("/")[-2:])
        return f"{short}:{keyword} @ {dotted(self.path)} {self.change} {self.value!r}"

    @property
    def key(self) -> str:
        return f"{self.constraint} {self.path} {self.change} {self.value!r}"


def resolve(schema: Tree, pointer: str) -> tuple[Tree, str]:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        return SCHEMA["definitions"][name], f"definitions/{name}"
    return schema, pointer


_JSON_TYPES: dict[str, Callable[[object], bool]] = {
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}
WRONG_TYPED: tuple[object, ...] = (None, 12345, "zz-text", ["zz"], {"zz": 1}, True)


def fits(schema: Tree, value: object) -> bool:
    """Does the value's JSON type match the branch's `type` (a branch without one: yes)?"""
    kind = schema.get("type")
    if kind is None:
        return True
    kinds = kind if isinstance(kind, list) else [kind]
    return any(_JSON_TYPES[k](value) for k in kinds)


def string_violating(pattern: str) -> str:
    return next(s for s in ("!bad value!", "zz", "0", "") if not re.search(pattern, s))


def string_matching(pattern: str) -> str:
    candidates = ("0", "0m", "00", "0.0", "a-b", "1h")
    return next(s for s in candidates if re.search(pattern, s))


def walk(schema: Tree, value: object, path: Path, pointer: str) -> Iterator[Case]:
    schema, pointer = resolve(schema, pointer)
    if path:  # the document itself being no mapping is test_manifest's malformed input
        yield from value_cases(schema, value, path, pointer)
    if isinstance(value, dict):
        yield from object_cases(schema, value, path, pointer)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from walk(schema["items"], item, (*path, index), f"{pointer}/items")
    for index, branch in enumerate(schema.get("oneOf", [])):
        branch, bpointer = resolve(branch, f"{pointer}/oneOf/{index}")
        if fits(branch, value):
            yield from walk(branch, value, path, bpointer)
    for index, part in enumerate(schema.get("allOf", [])):
        part, ppointer = resolve(part, f"{pointer}/allOf/{index}")
        yield from conditional_cases(part, value, path, ppointer)
        yield from walk({k: v for k, v in part.items() if k not in COND}, value, path, ppointer)


COND = ("if", "then", "not", "else")


def value_cases(schema: Tree, value: object, path: Path, pointer: str) -> Iterator[Case]:
    types = [schema] if "type" in schema else []
    if "oneOf" in schema:
        types = [resolve(b, "")[0] for b in schema["oneOf"]]
    if types and all("type" in t for t in types):
        allowed = [t for t in types]
        for wrong in WRONG_TYPED:
            if not any(fits(t, wrong) for t in allowed):
                yield Case(f"{pointer}:type", path, "set", wrong, path)
    if "enum" in schema:
        yield Case(f"{pointer}:enum", path, "set", "zz-not-in-enum", path)
    if isinstance(schema.get("pattern"), str):
        yield Case(f"{pointer}:pattern", path, "set", string_violating(schema["pattern"]), path)
    negated = schema.get("not")
    if isinstance(negated, dict) and isinstance(negated.get("pattern"), str):
        yield Case(f"{pointer}:not", path, "set", string_matching(negated["pattern"]), path)
    if "minLength" in schema:
        yield Case(f"{pointer}:minLength", path, "set", "x" * (schema["minLength"] - 1), path)
    whole = schema.get("type") == "integer"
    for key, delta in (("minimum", -1), ("maximum", 1), ("exclusiveMinimum", 0)):
        if key in schema:
            bound = schema[key] + delta
            yield Case(f"{pointer}:{key}", path, "set", int(bound) if whole else bound, path)
    if "maxItems" in schema or "minItems" in schema:
        items = resolve(schema.get("items", {}), "")[0].get("enum", ["zz"])
        yield Case(f"{pointer}:maxItems", path, "set", list(reversed(items))[:2], path)
        yield Case(f"{pointer}:minItems", path, "set", [], path)


def object_cases(
    schema: Tree, value: dict[str, object], path: Path, pointer: str
) -> Iterator[Case]:
    properties: dict[str, Tree] = schema.get("properties", {})
    for key in schema.get("required", []):
        yield Case(f"{pointer}:required/{key}", (*path, key), "delete", None, (*path, key))
    if schema.get("additionalProperties") is False:
        added = (*path, "zz_unexpected")
        yield Case(f"{pointer}:additionalProperties", added, "add", 1, added)
    if "minProperties" in schema:
        yield Case(f"{pointer}:minProperties", path, "set", {}, path)
    patterns: dict[str, Tree] = schema.get("patternProperties", {})
    for pattern in patterns:
        bad = "Not A Name"
        assert not re.search(pattern, bad)
        added = (*path, bad)
        yield Case(f"{pointer}:patternProperties", added, "add", {"kind": "ip"}, added)
    extra = schema.get("additionalProperties")
    for key, item in value.items():
        if key in properties:
            yield from walk(properties[key], item, (*path, key), f"{pointer}/properties/{key}")
        elif any(re.search(p, key) for p in patterns):
            sub = next(s for p, s in patterns.items() if re.search(p, key))
            yield from walk(sub, item, (*path, key), f"{pointer}/patternProperties")
        elif isinstance(extra, dict):
            yield from walk(extra, item, (*path, key), f"{pointer}/additionalProperties")


def conditional_cases(part: Tree, value: object, path: Path, pointer: str) -> Iterator[Case]:
    """allOf parts with if/then or not: break the rule by changing or removing the fields it
    names (jsonschema keeps only the changes that really break it)."""
    if not isinstance(value, dict) or not any(k in part for k in COND):
        return
    named: set[str] = set()
    for key in COND:
        sub = part.get(key, {})
        named |= set(sub.get("properties", {})) | set(sub.get("required", []))
    for name in sorted(named):
        yield Case(f"{pointer}:conditional", (*path, name), "delete", None, path)
        for candidate in (0, "0", False, "false", True, "true", "ram", "beta3", "x"):
            yield Case(f"{pointer}:conditional", (*path, name), "set", candidate, path)
    negated = part.get("not", {})
    consts = {
        name: sub["const"] if "const" in sub else sub["oneOf"][0]["const"]
        for name, sub in negated.get("properties", {}).items()
    }
    if consts:
        yield Case(f"{pointer}:conditional", path, "merge", consts, path)


def mutate(tree: Tree, case: Case) -> Tree:
    result = copy.deepcopy(tree)
    parent: Any = result  # a mapping or a list, by the step
    steps = case.path if case.change != "merge" else (*case.path, "")
    for step in steps[:-1]:
        parent = parent[step]
    last = steps[-1]
    if case.change == "delete":
        parent.pop(last, None)
    elif case.change == "merge":
        parent.update(case.value)
    else:
        parent[last] = case.value
    return result


def cases() -> tuple[list[Case], set[str]]:
    """The schema-breaking cases (confirmed by jsonschema) and every constraint met."""
    met: set[str] = set()
    confirmed: dict[str, Case] = {}
    for case in walk(SCHEMA, FULL, (), ""):
        met.add(case.constraint)
        if not VALIDATOR.is_valid(mutate(FULL, case)):
            confirmed.setdefault(case.key, case)
    return list(confirmed.values()), met


CASES, MET = cases()
# Constraints that cannot be broken alone (the other branch of their oneOf still accepts).
UNBREAKABLE_ALONE = {  # next_cases: [] is no list holding "off", and the other branch takes it
    "/properties/services/additionalProperties/properties/expose/oneOf/0/items/properties/"
    "http_options/properties/next_cases/oneOf/0:minItems",
}


def test_the_full_manifest_is_schema_valid_and_parses() -> None:
    assert VALIDATOR.is_valid(FULL), [e.message for e in VALIDATOR.iter_errors(FULL)]
    manifest = parse_manifest(yaml.safe_dump(FULL, sort_keys=False), "full.yaml")
    assert manifest.groups


def test_every_schema_field_is_in_the_full_manifest() -> None:
    """The walk reaches every property the schema names (else its constraints go untested)."""
    missing, present = [], []

    def props(schema: Tree, value: object, path: str) -> None:
        schema = resolve(schema, "")[0]
        for branch in schema.get("oneOf", []) + schema.get("allOf", []):
            if fits(resolve(branch, "")[0], value):
                props(branch, value, path)
        if isinstance(value, list) and isinstance(schema.get("items"), dict):
            for item in value:
                props(schema["items"], item, path + "[]")
        if not isinstance(value, dict):
            return
        for key, sub in schema.get("properties", {}).items():
            where = f"{path}.{key}".lstrip(".")
            if key in value:
                present.append(where)
                props(sub, value[key], where)
            elif where not in NOT_WALKED:
                missing.append(where)
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key not in schema.get("properties", {}) and isinstance(extra, dict):
                props(extra, item, f"{path}.*".lstrip("."))

    props(SCHEMA, FULL, "")
    assert sorted(set(missing) - set(present)) == []


def test_every_constraint_met_has_a_breaking_manifest() -> None:
    broken = {c.constraint for c in CASES}
    unbroken = {m for m in MET if m not in broken} - UNBREAKABLE_ALONE
    assert sorted(unbroken) == []
    assert len(broken) > 80  # the schema has about a hundred constraints on the full manifest


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_the_parser_refuses_what_the_schema_refuses(case: Case) -> None:
    text = yaml.safe_dump(mutate(FULL, case), sort_keys=False)
    with pytest.raises(ManifestError) as caught:
        parse_manifest(text, "broken.yaml")
    err = caught.value
    assert ONE_LINE.match(str(err)), str(err)
    want = dotted(case.expect)
    paths = [e.path for e in err.errors]
    assert want, "every case names a field"
    assert any(p == want or p.startswith((want + ".", want + "[")) for p in paths), (
        f"{case.id}: refused, but not naming {want!r}: {[str(e) for e in err.errors]}"
    )
