"""YAML in, with lines kept: decoding, loading (libyaml's parser under a bounded composer),
and lookups from a data path to the node it came from,
so that every problem can name its line.

A document is bounded while it is composed, before any of it is constructed: at most
MAX_MANIFEST_NODES nodes, MAX_MANIFEST_DEPTH levels and MAX_MANIFEST_TEXT characters of scalars,
where an alias costs the whole size of the node it names (so a kilobyte of nested aliases, the
"billion laughs", is refused after a few thousand events instead of expanding to gigabytes when
something walks or prints it). A recursive alias is refused too."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import yaml
from yaml._yaml import CParser
from yaml._yaml import Mark as CMark
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent, NodeEvent
from yaml.nodes import MappingNode, Node, ScalarNode
from yaml.resolver import BaseResolver

from marketplace.core.limits import MAX_MANIFEST_DEPTH, MAX_MANIFEST_NODES, MAX_MANIFEST_TEXT
from marketplace.core.manifest.errors import ManifestError

Path = tuple[str | int, ...]  # keys and list indices from the document's root to a field


Mark = yaml.Mark | CMark


class LineIndex:
    """Line numbers as an editor shows them, from a mark's character offset: \n, \r\n or \r
    end a line (YAML and libyaml's marks also break lines at NEL, U+2028 and U+2029, which no
    editor shows: counted that way, every line after one was named one too far down), and a
    mark past the last line (the end of the stream) names the last line.

    Counted when asked, at C speed and with no copy (a few dozen lines are asked for at most):
    a table of every line's start cost 47 MB and most of a second for 1 MiB of newlines."""

    def __init__(self, text: str) -> None:
        self._text = text
        ends_with_break = text.endswith(("\n", "\r"))
        self.count = self._breaks(len(text)) + 1 - ends_with_break
        """How many lines the file has (at least 1: an empty file has an empty first line)."""

    def _breaks(self, end: int) -> int:
        text = self._text
        return text.count("\n", 0, end) + text.count("\r", 0, end) - text.count("\r\n", 0, end)

    def at(self, offset: int) -> int:
        """The line (from 1) holding the character at `offset`."""
        return min(self._breaks(max(0, offset)) + 1, max(1, self.count))

    def of(self, mark: Mark | None) -> int:
        return self.at(mark.index) if mark is not None else 1


class TooLarge(Exception):
    """The document is over a bound (nodes, depth, text), counted through its aliases."""

    def __init__(self, problem: str, mark: Mark | None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.mark = mark


class _BoundedComposer(Composer):
    """PyYAML's composer, counting what the document would expand to as it composes it."""

    def __init__(self) -> None:
        Composer.__init__(self)
        self._nodes = 0
        self._text = 0
        self._depth = 0
        self._cost: dict[int, tuple[int, int]] = {}  # anchored node → (nodes, characters)

    # provided by the parser the composer is mixed with (CParser)
    check_event: Callable[..., bool]
    peek_event: Callable[[], NodeEvent]

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event = self.peek_event()
        if self.check_event(AliasEvent):
            node = super().compose_node(parent, index)
            cost = self._cost.get(id(node))
            if cost is None:  # its anchor is still open: the alias is inside what it names
                raise TooLarge(f"recursive alias *{event.anchor}", event.start_mark)
            self._charge(cost[0], cost[1], event.start_mark)
            return node
        self._depth += 1
        if self._depth > MAX_MANIFEST_DEPTH:
            raise TooLarge(
                f"nested too deeply (more than {MAX_MANIFEST_DEPTH} levels)",
                event.start_mark,
            )
        nodes, text = self._nodes, self._text
        node = super().compose_node(parent, index)
        self._depth -= 1
        own = len(node.value) if isinstance(node, ScalarNode) else 0
        self._charge(1, own, event.start_mark)
        if event.anchor is not None:
            self._cost[id(node)] = (self._nodes - nodes, self._text - text)
        return node

    def _charge(self, nodes: int, text: int, mark: Mark | None) -> None:
        self._nodes += nodes
        self._text += text
        if self._nodes > MAX_MANIFEST_NODES:
            raise TooLarge(
                f"the document expands to more than {MAX_MANIFEST_NODES:,} YAML nodes "
                "(aliases count as what they repeat)",
                mark,
            )
        if self._text > MAX_MANIFEST_TEXT:
            raise TooLarge(
                f"the document expands to more than {MAX_MANIFEST_TEXT:,} characters of text "
                "(aliases count as what they repeat)",
                mark,
            )


class GoResolver(BaseResolver):
    """Plain scalars typed as Akash's parser (Go's yaml.v3) types them, not as YAML 1.1 does.

    PyYAML's YAML 1.1 reads `80:80` as the number 4880 (base 60), `yes`, `no`, `on`, `off`, `y`
    and `n` as booleans, `2024-01-01` as a date and `=` as a tag no safe loader can build, where
    yaml.v3 reads them all as text: an SDL port was read as another port, and a plain `args: [on]`
    or `env: [2024-01-01]` was refused. yaml.v3's own rules (resolve.go) instead: true/false
    only; integers in base 10, 0x, 0o, 0b and the leading-zero octal, with `_` ignored; floats
    with a dot or an exponent, .inf and .nan; the nulls; the merge key. A typed boolean field
    still takes yes/no/on/off/y/n (context.strict_bool), as yaml.v3 does for a Go bool.
    """


for _tag, _pattern, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    (
        "int",
        r"^(?:[-+]?0b[0-1_]+|[-+]?0o[0-7_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)"
        r"|[-+]?0x[0-9a-fA-F_]+)$",
        "-+0123456789",
    ),
    (
        "float",
        r"^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("merge", r"^(?:<<)$", "<"),
):
    GoResolver.add_implicit_resolver(
        f"tag:yaml.org,2002:{_tag}", re.compile(_pattern), list(_first)
    )


class _Loader(_BoundedComposer, CParser, SafeConstructor, GoResolver):
    """libyaml's parser (5-10× faster) under the bounded composer: the same nodes and marks."""

    def __init__(self, text: str) -> None:
        CParser.__init__(self, text)
        _BoundedComposer.__init__(self)
        SafeConstructor.__init__(self)
        GoResolver.__init__(self)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[object, object]:
        """Keys as written: every SDL mapping is string-keyed in Akash (Go map[string]...), so
        `true:`, `~:` and `5:` are the keys "true", "~" and "5", not True, None and 5, which
        paths showed as "True"/"None" at the wrong line and an attribute took as "None"."""
        self.flatten_mapping(node)
        mapping: dict[object, object] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    "found a key that is a list or a mapping (a key is text)",
                    key_node.start_mark,
                )
            mapping[key_node.value] = self.construct_object(value_node, deep=deep)
        return mapping

    def construct_merge_text(self, node: ScalarNode) -> str:
        """`<<` where a value stands is the text "<<" (only a key merges)."""
        return str(self.construct_scalar(node))

    yaml_constructors: ClassVar[dict[Any, Any]] = {  # PyYAML's table, as its stubs type it
        **SafeConstructor.yaml_constructors,
        "tag:yaml.org,2002:merge": construct_merge_text,
    }

    def release(self) -> None:
        """Drop what a parse that stopped half-way still holds (the constructor's pending
        generators refer back to the loader: a cycle only the collector would free)."""
        self.anchors = {}
        self._cost = {}
        self.constructed_objects = {}
        self.recursive_objects = {}
        self.state_generators = []


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


def load_yaml(raw: bytes, source: str) -> tuple[yaml.Node | None, object, LineIndex]:
    """The node tree (for lines), the data of one YAML document and the file's lines;
    ManifestError on anything YAML refuses."""
    text = _decode(raw, source)
    lines = LineIndex(text)
    error: ManifestError
    try:
        node, data = _load(text)
        return node, data, lines
    except TooLarge as exc:
        line = lines.of(exc.mark)
        error = ManifestError(f"manifest too large: {exc.problem}", line=line, source=source)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = _yaml_problem(exc)
        error = ManifestError(f"invalid YAML: {what}", line=lines.of(mark), source=source)
    except yaml.reader.ReaderError as exc:
        line = lines.at(exc.position)
        what = f"invalid YAML: unacceptable character {_char(exc.character)}"
        error = ManifestError(what, line=line, source=source)
    except yaml.YAMLError as exc:
        error = ManifestError(f"invalid YAML: {exc}", source=source)
    except RecursionError:
        error = ManifestError("invalid YAML: nested too deeply", source=source)
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a timestamp out of range
        error = ManifestError(f"invalid YAML value: {exc}", source=source)
    # Raised outside the handlers, so it carries no traceback of the parse: the partly composed
    # document is freed at once by reference counting. (Chained to the YAML error, it stayed
    # alive in cycles until the collector ran; hostile manifests made that a 0.5 s pause.)
    raise error


def _yaml_problem(exc: yaml.MarkedYAMLError) -> str:
    """libyaml's words, where they read oddly on their own said plainly."""
    what = exc.problem or exc.context or "malformed"
    if exc.context == "expected a single document in the stream":
        return "more than one YAML document (a manifest is one document; remove the '---')"
    return what


def _load(text: str) -> tuple[yaml.Node | None, object]:
    # libyaml's parser keeps its nesting on the heap; the composer (Python, ours) stops at
    # MAX_MANIFEST_DEPTH, so no nesting reaches a recursion limit.
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    finally:
        loader.dispose()
        loader.release()


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
