"""README.md is followed literally by new users: what it tells them to type must exist.

Every `gpumarket ...` command in README's code (fenced blocks, indented blocks and inline code)
names a real subcommand, and each of its flags is one that subcommand takes; every file of the
checkout it names exists; every example manifest, provider config and scenario loads with the
loader the command uses; every TOML block is a config the agent accepts; and the test command it
gives is the one CI runs. These checks read the click commands in-process (no subprocess), so a
flag renamed in the code and not in README (or the reverse) fails here, not on a user's machine.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from marketplace.cli.main import cli
from marketplace.core.manifest import parse_manifest
from provider_agent.config import check_runnable, load_config
from provider_agent.network import publish_ip
from simulator.cli import DefaultRunGroup
from simulator.scenario import load_scenario
from simulator.sweep import load_sweep
from tests.helpers import EXAMPLES, REPO

README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))


@dataclass(frozen=True)
class Snippet:
    """A piece of code in a markdown file, with the line it starts on (for the failure message)."""

    source: Path
    line: int
    text: str
    lang: str = ""

    def where(self) -> str:
        return f"{self.source.name}:{self.line}"


def code_snippets(path: Path) -> list[Snippet]:
    """Fenced blocks, indented blocks (4 spaces after a blank line) and inline code spans."""
    snippets: list[Snippet] = []
    lines = path.read_text().splitlines()
    fence: list[str] | None = None
    fence_lang, fence_start = "", 0
    indented: list[str] = []
    indented_start = 0
    previous_blank = True
    for number, line in enumerate(lines, start=1):
        if fence is not None:
            if line.startswith("```"):
                snippets.append(Snippet(path, fence_start, "\n".join(fence), fence_lang))
                fence = None
            else:
                fence.append(line)
            continue
        if line.startswith("```"):
            fence, fence_lang, fence_start = [], line[3:].strip(), number + 1
            continue
        if line.startswith("    ") and (indented or previous_blank) and line.strip():
            indented_start = indented_start or number
            indented.append(line[4:])
            previous_blank = False
            continue
        if indented:
            snippets.append(Snippet(path, indented_start, "\n".join(indented)))
            indented, indented_start = [], 0
        previous_blank = not line.strip()
    # inline spans may wrap over a line break: join paragraphs outside fences first
    text = re.sub(
        r"```.*?```", lambda m: "\n" * m.group(0).count("\n"), path.read_text(), flags=re.S
    )
    for match in re.finditer(r"`([^`\n]+(?:\n[^`\n]+)?)`", text):
        start = text.count("\n", 0, match.start()) + 1
        snippets.append(Snippet(path, start, match.group(1).replace("\n", " "), "inline"))
    return snippets


def command_lines(snippet: Snippet) -> list[str]:
    """The `gpumarket ...` invocations in a snippet, one per line, continuations joined,
    comments, pipes and `&&` chains cut off."""
    joined = re.sub(r"\\\n\s*", " ", snippet.text)
    found = []
    for line in joined.splitlines():
        for part in re.split(r"&&|\|\||;|\$\(|\)|\|(?![^\[]*\])", line.split(" #")[0]):
            words = part.split()
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value prefixes
                words.pop(0)
            if len(words) >= 2 and words[0] == "gpumarket" and re.fullmatch(r"[a-z-]+", words[1]):
                found.append(" ".join(words))
    return found


def resolve(words: list[str]) -> tuple[click.Command, list[str], list[str]]:
    """The click command the words name, the path to it, and the words after it."""
    command: click.Command = cli
    path = ["gpumarket"]
    rest = words[1:]
    while isinstance(command, click.Group):
        with click.Context(command) as ctx:
            names = set(command.list_commands(ctx))
            if isinstance(command, DefaultRunGroup):  # `simulate X.yaml`, `simulate --from-market`
                if rest and rest[0].startswith("--") and rest[0][2:] in names:
                    rest = [rest[0][2:], *rest[1:]]
                elif not rest or rest[0] not in names:
                    rest = ["run", *rest]
            if not rest or rest[0].startswith("-"):
                break
            sub = command.get_command(ctx, rest[0])
        if sub is None:
            break
        command, path, rest = sub, [*path, rest[0]], rest[1:]
    return command, path, rest


def option_names(command: click.Command) -> set[str]:
    names = {"--help", "-h"}
    for param in command.params:
        if isinstance(param, click.Option):
            names.update(param.opts)
            names.update(param.secondary_opts)
    return names


def flags_in(rest: list[str]) -> list[str]:
    """The option names among a command's words (`[--days 7]`, `--key=NAME`, `-f`); what
    follows a bare `--` belongs to the command run in the container."""
    flags = []
    for word in rest:
        if word == "--":
            break
        word = word.strip("[](),.;`'\"")
        word = word.split("=", 1)[0].split("/", 1)[0]
        if re.fullmatch(r"--?[a-zA-Z][a-zA-Z0-9-]*", word) and word not in ("-", "--"):
            flags.append(word)
    return flags


def readme_commands() -> list[tuple[Snippet, str]]:
    return [
        (s, c) for path in (README, *DOCS) for s in code_snippets(path) for c in command_lines(s)
    ]


def test_readme_names_commands_at_all() -> None:
    """The extraction itself works: the quick start's and the walkthrough's commands are seen."""
    seen = {c for _, c in readme_commands()}
    assert "gpumarket simulate" in seen
    assert any(c.startswith("gpumarket provider run --config") for c in seen)
    assert any(c.startswith("gpumarket deploy examples/inference.yaml") for c in seen)
    assert len(seen) > 60, len(seen)


def test_every_command_in_the_docs_exists_with_its_flags() -> None:
    problems = []
    for snippet, line in readme_commands():
        command, path, rest = resolve(line.split())
        if isinstance(command, click.Group) and rest and re.fullmatch(r"[a-z][a-z-]*", rest[0]):
            problems.append(f"{snippet.where()}: `{line}`: {' '.join(path)} has no {rest[0]!r}")
            continue
        known = option_names(command)
        for flag in flags_in(rest):
            if flag not in known:
                problems.append(f"{snippet.where()}: `{line}`: {' '.join(path)} has no {flag}")
    assert not problems, "\n".join(problems)


# files of the checkout the docs name: examples, docs, scripts, bench and the code's own modules
FILE_REFERENCE = re.compile(
    r"(?<![\w/.])((?:examples|docs|scripts|bench|tests|marketplace|provider_agent|simulator|proto"
    r"|\.ci)/[\w./-]*\w)"
)


def test_every_file_the_docs_name_exists() -> None:
    missing = []
    for path in (README, *DOCS):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            for name in FILE_REFERENCE.findall(line):
                if "<" in name or "*" in name:
                    continue
                if not (REPO / name).exists():
                    missing.append(f"{path.name}:{number}: {name}")
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_file_loads(path: Path) -> None:
    """Manifests parse as SDL, scenarios and sweeps load as the simulator reads them."""
    text = path.read_text()
    if path.name.startswith("sweep"):
        assert load_sweep(path).combinations()
    elif path.name.startswith("scenario"):
        load_scenario(path)
    else:
        assert parse_manifest(text, path.name).groups, path


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_every_example_provider_config_loads_and_starts_anywhere(path: Path) -> None:
    """Copied as is to any machine, an example passes what the agent checks at start too
    (the address it publishes ports on must be this host's)."""
    cfg = load_config(path)
    check_runnable(cfg)
    publish_ip(cfg)


def toml_blocks() -> list[Snippet]:
    return [s for s in code_snippets(README) if s.lang == "toml"]


def test_readme_shows_a_provider_config() -> None:
    assert toml_blocks(), "README shows no provider.toml block"


@pytest.mark.parametrize("snippet", toml_blocks(), ids=lambda s: s.where())
def test_every_toml_block_is_a_config_the_agent_loads(snippet: Snippet, tmp_path: Path) -> None:
    tomllib.loads(snippet.text)
    path = tmp_path / "provider.toml"
    path.write_text(snippet.text)
    cfg = load_config(path)
    check_runnable(cfg)
    publish_ip(cfg)


def test_readme_test_command_is_what_ci_runs() -> None:
    """README's quick start gives `bash scripts/test.sh`; .ci/run runs exactly that."""
    quick_start = next(s for s in code_snippets(README) if "scripts/test.sh" in s.text)
    readme_command = next(
        line.split("#")[0].strip()
        for line in quick_start.text.splitlines()
        if "scripts/test.sh" in line
    )
    ci_lines = [
        line.strip()
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    ci_command = ci_lines[-1]
    assert shlex.split(ci_command) == shlex.split(readme_command)


def test_the_update_example_is_an_update_in_place_of_the_inference_example() -> None:
    """README's walkthrough updates D1 (examples/inference.yaml) to examples/inference-v2.yaml."""
    from marketplace.core.manifest.update import plan_update

    old, new = (EXAMPLES / "inference.yaml", EXAMPLES / "inference-v2.yaml")
    plan = plan_update(parse_manifest(old.read_text()), parse_manifest(new.read_text()))
    assert plan.allowed, plan.reason


def command_paths() -> list[list[str]]:
    """Every command and group, as the words after `gpumarket`."""
    found: list[list[str]] = []

    def walk(command: click.Command, path: list[str]) -> None:
        found.append(path)
        if isinstance(command, click.Group):
            with click.Context(command) as ctx:
                for name in command.list_commands(ctx):
                    sub = command.get_command(ctx, name)
                    if sub is not None:
                        walk(sub, [*path, name])

    walk(cli, [])
    return found


def test_every_help_teaches() -> None:
    """README: every command has --help. Each one prints its usage and a description."""
    from click.testing import CliRunner

    assert len(command_paths()) > 40
    for path in command_paths():
        result = CliRunner().invoke(cli, [*path, "--help"], prog_name="gpumarket")
        assert result.exit_code == 0, (path, result.output)
        usage, _, description = result.output.partition("\n\n")
        assert usage.startswith(f"Usage: gpumarket {' '.join(path)}".rstrip()), result.output
        assert description.strip(), f"gpumarket {' '.join(path)} --help describes nothing"


def test_every_market_command_takes_json() -> None:
    """README: the tenant and market commands take `--market`, `--key` and `--json` for
    scripts. Interactive ones (a shell, the console's web server) have no output to parse."""
    interactive = {"gpumarket shell", "gpumarket console"}
    missing = []

    def walk(command: click.Command, path: list[str]) -> None:
        if isinstance(command, click.Group):
            with click.Context(command) as ctx:
                for name in command.list_commands(ctx):
                    sub = command.get_command(ctx, name)
                    if sub is not None:
                        walk(sub, [*path, name])
            return
        names = option_names(command)
        if "--market" in names and " ".join(path) not in interactive and "--json" not in names:
            missing.append(" ".join(path))

    walk(cli, ["gpumarket"])
    assert not missing, missing


def yaml_blocks() -> list[Snippet]:
    return [s for path in (README, *DOCS) for s in code_snippets(path) if s.lang == "yaml"]


@pytest.mark.parametrize("snippet", yaml_blocks(), ids=lambda s: s.where())
def test_every_manifest_block_is_one_the_parser_takes(snippet: Snippet) -> None:
    """A whole SDL shown in the docs parses; a `gpumarket:` block parses as the settings of
    examples/training.yaml."""
    if snippet.text.startswith("version:"):
        text = snippet.text
    else:
        assert snippet.text.startswith("gpumarket:"), snippet.where()
        base = (EXAMPLES / "training.yaml").read_text()
        text = base[: base.index("\ngpumarket:")] + "\n" + snippet.text
    parse_manifest(text, snippet.where())


def test_the_docs_show_manifest_blocks() -> None:
    assert len(yaml_blocks()) >= 4
