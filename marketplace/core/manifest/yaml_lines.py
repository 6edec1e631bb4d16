"""YAML in, with lines kept: decoding, loading (libyaml when the text is plainly shallow, the
pure-Python loader otherwise), and lookups from a data path to the node it came from, so that
every problem can name its line."""

from __future__ import annotations

from collections.abc import Iterator

import yaml

from marketplace.core.manifest.errors import ManifestError

Path = tuple[str | int, ...]  # keys and list indices from the document's root to a field
# libyaml's loader when PyYAML was built with it (5-10× faster); the same nodes, marks and errors.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_C_LOADER_MAX_DEPTH = 400


def _decode(raw: bytes, source: str) -> str:
    """UTF-8 (with or without BOM) or UTF-16 with a BOM, as YAML allows; anything else is binary."""
    try:
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            return raw.decode("utf-16")
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ManifestError(
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "is this a binary file?",
            line=line,
            source=source,
        ) from None


def load_yaml(raw: bytes, source: str) -> tuple[yaml.Node | None, object]:
    """The node tree (for lines) and the data of one YAML document; ManifestError on anything
    YAML refuses."""
    text = _decode(raw, source)
    try:
        # libyaml recurses in C and crashes the process on absurdly deep nesting; only plainly
        # shallow text goes to it, the rest to the pure-Python loader (RecursionError is caught).
        loader = (
            _Loader(text) if _nesting_bound(text) <= _C_LOADER_MAX_DEPTH else yaml.SafeLoader(text)
        )
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        what = exc.problem or exc.context or "malformed"
        raise ManifestError(f"invalid YAML: {what}", line=line, source=source) from None
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise ManifestError(
            f"invalid YAML: unacceptable character {_char(exc.character)}",
            line=line,
            source=source,
        ) from None
    except yaml.YAMLError as exc:
        raise ManifestError(f"invalid YAML: {exc}", source=source) from None
    except RecursionError:
        raise ManifestError("invalid YAML: nested too deeply", source=source) from None
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a timestamp out of range
        raise ManifestError(f"invalid YAML value: {exc}", source=source) from None
    return node, data


def _nesting_bound(text: str) -> int:
    """A cheap upper bound on YAML nesting depth: flow brackets plus, per line, indentation and
    block markers. Quotes are not understood, so the bound may be high, never low."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    block = max(
        (
            len(line)
            - len(line.lstrip(" "))
            + line.count("- ")
            + line.count(": ")
            + line.count("? ")
            for line in text.splitlines()
        ),
        default=0,
    )
    return deepest + block


def _char(character: object) -> str:
    return f"#x{character:04x}" if isinstance(character, int) else repr(character)


def node_at(root: yaml.Node | None, path: Path) -> yaml.Node | None:
    """The deepest node on `path` (the nearest existing ancestor when the field is missing)."""
    node = root
    for step in path:
        found = child(node, step)
        if found is None:
            return node
        node = found
    return node


def child(node: yaml.Node | None, step: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        found = None
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(step):
                found = value  # the last one wins, as in the data
        return found
    if isinstance(node, yaml.SequenceNode) and isinstance(step, int):
        return node.value[step] if 0 <= step < len(node.value) else None
    return None


def key_node(node: yaml.Node | None, step: str | int) -> yaml.Node | None:
    """The key node for `step` in a mapping (None in a list)."""
    if isinstance(node, yaml.MappingNode):
        found = None
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(step):
                found = key
        return found
    return None


def duplicate_keys(root: yaml.Node | None) -> Iterator[tuple[yaml.Node, Path]]:
    """Keys defined twice in one mapping: Go's yaml.v3 refuses them, PyYAML keeps the last."""
    seen_nodes: set[int] = set()
    stack: list[tuple[yaml.Node | None, Path]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if node is None or id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: set[str] = set()
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode) or key.value == "<<":
                    continue
                if key.value in keys:
                    yield key, (*path, key.value)
                keys.add(key.value)
                stack.append((value, (*path, key.value)))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((child, (*path, i)) for i, child in enumerate(node.value))


def exact(root: yaml.Node | None, path: Path) -> bool:
    """Whether `path` exists in the node tree (rather than stopping at an ancestor)."""
    node = root
    for step in path:
        node = child(node, step)
        if node is None:
            return False
    return True
