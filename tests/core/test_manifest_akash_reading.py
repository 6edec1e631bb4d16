"""Classes of manifest problems found by running real and hostile SDLs, each fixed at its root
and pinned here by cases of the whole class:

- plain YAML values are typed as Akash's parser (Go's yaml.v3) types them, not as YAML 1.1;
- strings a container runtime receives hold nothing it cannot take;
- a manifest that validates is one the market takes (the market's own bounds, applied early);
- lines are counted as an editor counts them.
"""

from __future__ import annotations

import pytest

from marketplace.core import limits
from marketplace.core.manifest import ManifestError, parse_manifest
from tests.helpers import BASE


def sub(old: str, new: str, text: str = BASE) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def refused(text: str) -> ManifestError:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(text, "job.yaml")
    return caught.value


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


# --- YAML typed as yaml.v3 types it ---------------------------------------------------------

ARGS = """args: ["nginx -g 'daemon off;'"]"""


def test_yaml_1_1_words_dates_and_signs_are_text_where_text_is_asked_for() -> None:
    """`on`, `yes`, `n`, a date, `=` and `<<` unquoted: YAML 1.1 reads booleans, a date and
    tags no loader builds (refused, or "invalid YAML"); Akash reads the text."""
    manifest = parse_manifest(sub(ARGS, "args: [on, yes, n, 2024-01-01, =, <<, 12:30]"), "j.yaml")
    assert manifest.services["web"].args == ("on", "yes", "n", "2024-01-01", "=", "<<", "12:30")


def test_a_base_60_number_is_no_port() -> None:
    """`as: 80:8080` was read as 12880 (YAML 1.1 base 60), a port nobody asked for."""
    text = sub("as: 80", "as: 80:8080")
    error = refused(text)
    assert error.path == "services.web.expose[0].as"
    assert "expected a whole number, got a string '80:8080'" in error.message
    assert error.line == line_of(text, "as: 80:8080")


@pytest.mark.parametrize(
    ("written", "millis"),
    [("010", 10_000), ("1.0", 1_000), ("1e1", 10_000), ("'0.5'", 500), ("250m", 250)],
)
def test_cpu_units_are_read_from_the_text(written: str, millis: int) -> None:
    """Akash parses CPU units from the text (ParseFloat): `010` is 10 CPUs, not octal 8."""
    manifest = parse_manifest(sub("units: 0.5", f"units: {written}"), "j.yaml")
    assert manifest.groups[0].resources[0].cpu_millis == millis


@pytest.mark.parametrize("written", ["0x10", "1_0", "0b11", "0o7"])
def test_cpu_units_akash_cannot_parse_are_refused(written: str) -> None:
    error = refused(sub("units: 0.5", f"units: {written}"))
    assert error.path == "profiles.compute.web.resources.cpu.units"
    assert f"invalid CPU quantity '{written}'" in error.message


def test_gpu_units_are_read_from_the_text() -> None:
    """ParseUint(text, 10): `010` is 10 GPUs; `0x2` is no count."""
    manifest = parse_manifest(sub("units: 2\n", "units: 010\n"), "j.yaml")
    assert manifest.groups[0].resources[0].gpu.units == 10
    error = refused(sub("units: 2\n", "units: 0x2\n"))
    assert error.path == "profiles.compute.web.resources.gpu.units"


@pytest.mark.parametrize(("word", "value"), [("yes", True), ("On", True), ("off", False)])
def test_a_boolean_field_takes_the_words_yaml_v3_takes(word: str, value: bool) -> None:
    text = sub("- global: true", f"- global: {word}")
    text = sub("mount: /data", f"mount: /data\n          readOnly: {word}", text)
    service = parse_manifest(text, "j.yaml").services["web"]
    assert service.expose[0].to[0].global_ is value
    assert service.storage[0].read_only is value


def test_a_boolean_field_still_refuses_text_that_is_no_boolean() -> None:
    error = refused(sub("- global: true", "- global: 'maybe'"))
    assert error.path == "services.web.expose[0].to[0].global"


def test_a_placement_attribute_keeps_the_words_as_written() -> None:
    text = sub("region: us-west", "region: on\n        gpu: 4090\n        when: 2024-01-01")
    attributes = dict(parse_manifest(text, "j.yaml").groups[0].requirements.attributes)
    assert attributes == {"region": "on", "gpu": "4090", "when": "2024-01-01"}


# --- strings a container runtime receives ---------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ("image: nginx:1.27", 'image: "nginx\\0"', "services.web.image"),
        ("- MODE=prod", '- "MODE=a\\0b"', "services.web.env[0]"),
        ('command: ["sh", "-c"]', 'command: ["s\\0h"]', "services.web.command[0]"),
        (ARGS, 'args: ["a\\0"]', "services.web.args[0]"),
        ("mount: /data", 'mount: "/da\\0ta"', "services.web.params.storage.data.mount"),
    ],
)
def test_no_string_a_container_gets_holds_a_nul(old: str, new: str, path: str) -> None:
    """YAML's "\\0" is one character; no image, argument, variable or path can carry it (the
    provider would find out after the auction, with a failed lease)."""
    error = refused(sub(old, new))
    assert error.path == path
    assert "holds a NUL character" in error.message


@pytest.mark.parametrize(
    "image",
    [
        "nginx",
        "nginx:1.27",
        "ghcr.io/org/app:v1.2-rc_3",
        "localhost:5000/a/b",
        "a@sha256:" + "0" * 64,
    ],
)
def test_image_references_docker_takes_are_accepted(image: str) -> None:
    assert parse_manifest(sub("image: nginx:1.27", f"image: {image}"), "j.yaml")


@pytest.mark.parametrize(
    "image", ["'ngi nx'", "'nginx\\n'", "Nginx/App", "'nginx:'", "'a:b:c'", "x" * 600, "'-x'"]
)
def test_image_references_docker_refuses_are_refused_naming_the_field(image: str) -> None:
    error = refused(sub("image: nginx:1.27", f"image: {image}"))
    assert error.path == "services.web.image"
    assert "invalid image reference" in error.message and len(str(error)) < 300


def test_a_mount_point_written_two_ways_is_one_mount_point() -> None:
    text = sub(
        "      storage:\n        data:\n          mount: /data\n",
        "      storage:\n        data:\n          mount: /data\n"
        "        scratch:\n          mount: /data/\n",
    )
    text = sub(
        "          - size: 1Gi\n",
        "          - size: 1Gi\n          - name: scratch\n            size: 1Gi\n",
        text,
    )
    error = refused(text)
    assert "duplicated mount point '/data/'" in error.message
    assert error.path == "services.web.params.storage.scratch.mount"


def test_nothing_is_mounted_over_the_root() -> None:
    error = refused(sub("mount: /data", "mount: /./"))
    assert "cannot be mounted over /" in error.message


def test_an_env_key_must_be_printable() -> None:
    error = refused(sub("- MODE=prod", '- "MO\\tDE=prod"'))
    assert error.path == "services.web.env[0]"


# --- what validates, the market takes -------------------------------------------------------


def attributes(count: int) -> str:
    return "".join(f"        key{i}: v\n" for i in range(count))


@pytest.mark.parametrize(
    ("old", "new", "path", "says"),
    [
        (
            "        region: us-west\n",
            attributes(limits.MAX_ATTRIBUTES + 1),
            "profiles.placement.dc.attributes",
            "65 attributes; the limit is 64",
        ),
        (
            "          - akash1auditor\n",
            "".join(f"          - auditor{i}\n" for i in range(limits.MAX_ATTRIBUTES + 1)),
            "profiles.placement.dc.signedBy.anyOf",
            "65 auditors; the limit is 64",
        ),
        (
            "region: us-west",
            'region: "us\\u2028west"',
            "profiles.placement.dc.attributes.region",
            "control character (U+2028",
        ),
        (
            "- akash1auditor",
            '- "akash\\u2029auditor"',
            "profiles.placement.dc.signedBy.anyOf[0]",
            "control character (U+2029",
        ),
    ],
)
def test_the_market_s_own_bounds_are_applied_when_a_manifest_is_read(
    old: str, new: str, path: str, says: str
) -> None:
    """Each was valid to `manifest validate` and then refused by the market at deploy."""
    error = refused(sub(old, new))
    assert error.path == path and says in error.message, str(error)


def test_the_bytes_are_bounded_by_the_parser_itself() -> None:
    """validate used to pass a 2 MiB manifest the market then refused (1 MiB)."""
    padded = BASE + "#" * limits.MAX_MANIFEST_BYTES
    error = refused(padded)
    assert error.line == 1 and "the limit is 1,048,576" in error.message


def test_every_group_a_valid_manifest_yields_passes_the_market_s_checks() -> None:
    text = sub("        region: us-west\n", attributes(limits.MAX_ATTRIBUTES))
    for group in parse_manifest(text, "j.yaml").groups:
        limits.check_group_texts(group)
        assert 1 <= group.max_price_per_hour <= limits.MAX_PRICE_PER_HOUR


# --- keys are text, as in Akash's string-keyed maps -------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "path", "written"),
    [
        ("region: us-west", "~: x", "profiles.placement.dc.attributes.~", "~: x"),
        ("region: us-west", "5: x", "profiles.placement.dc.attributes.5", "5: x"),
        ("services:\n  web:", "services:\n  ~:\n    image: x\n  web:", "services.~", "  ~:"),
        ("services:\n  web:", "services:\n  Null:\n    image: x\n  web:", "services.Null", "Null:"),
    ],
)
def test_a_key_is_named_as_written_at_its_own_line(
    old: str, new: str, path: str, written: str
) -> None:
    """`~:` was the key None: an attribute "None=x" was accepted, and errors named "None" at
    the line of the enclosing mapping."""
    text = sub(old, new)
    error = refused(text)
    assert error.path == path, str(error)
    assert error.line == line_of(text, written)


def test_a_key_that_is_a_list_is_refused_at_its_line() -> None:
    text = sub("services:\n  web:", "services:\n  ? [a, b]\n  : {image: x}\n  web:")
    error = refused(text)
    assert "a key is text" in error.message and error.line == line_of(text, "? [a, b]")


@pytest.mark.parametrize(
    ("field", "value"),
    [("arch", "[amd64, arm64]"), ("arch", "x" * 300), ("arch", '"a\\u2028b"'), ("arch", "~")],
)
def test_a_cpu_architecture_is_a_name(field: str, value: str) -> None:
    """It becomes a need every provider is shown: a list was read as "[...]", and any length or
    control character went through."""
    error = refused(
        sub("units: 0.5", f"units: 0.5\n          attributes:\n            {field}: {value}")
    )
    assert error.path == "profiles.compute.web.resources.cpu.attributes.arch", str(error)


def test_a_volume_name_is_a_name() -> None:
    text = sub("- name: data", f"- name: {'v' * 100}")
    text = sub("      storage:\n        data:", f"      storage:\n        {'v' * 100}:", text)
    error = refused(text)
    assert error.path == "profiles.compute.web.resources.storage[1].name"
    assert "invalid volume name" in error.message


# --- patterns hold the whole value, in ASCII, as Go's regexp does -----------------------------

GANG = '\ngpumarket:\n  kind: training\n  gang:\n    nodes: 2\n    min_bandwidth: "{}"\n'
NAMED_BY_A_PATTERN = {  # field: (how to write VALUE there, a valid VALUE, blanks trimmed first)
    "service name": (
        lambda v: sub("services:\n", f'services:\n  "{v}":\n    image: x\n'),
        "api",
        False,
    ),
    "endpoint name": (
        lambda v: (
            sub("- global: true", f'- global: true\n            ip: "{v}"')
            + f'endpoints:\n  "{v}":\n    kind: ip\n'
        ),
        "myip",
        False,
    ),
    "accept hostname": (
        lambda v: sub("        as: 80\n", f'        as: 80\n        accept: ["{v}"]\n'),
        "example.com",
        False,
    ),
    "attribute key": (lambda v: sub("region: us-west", f'"{v}": x'), "region", False),
    "GPU model": (lambda v: sub("- model: a100", f'- model: "{v}"'), "a100", True),
    "image tag": (lambda v: sub("image: nginx:1.27", f'image: "nginx:{v}"'), "1.27", False),
    "volume name": (
        lambda v: sub("- name: data", f'- name: "{v}"').replace(
            "        data:\n", f'        "{v}":\n'
        ),
        "data",
        False,
    ),
    "reclamation window": (lambda v: BASE + f'reclamation:\n  min_window: "{v}"\n', "1h", False),
    "checkpoint URI": (
        lambda v: BASE + f'gpumarket:\n  checkpoint: "{v}"\n',
        "s3://b/run",
        False,
    ),
    "gang bandwidth": (
        lambda v: sub("units: 2\n", "units: 1\n") + GANG.format(v),
        "10Gbps",
        True,
    ),
}


@pytest.mark.parametrize("field", NAMED_BY_A_PATTERN)
def test_a_value_a_pattern_checks_holds_nothing_after_it_nor_a_non_ascii_letter(
    field: str,
) -> None:
    """Python's `$` also matches before a final newline, and its \\w takes every alphabet: a
    service "web\\n" (a container name with a newline), a hostname "example.com\\n", an
    attribute key "région" and a tag "tåg" were accepted. Each field so checked, both ways
    (a field read with its blanks trimmed takes the newline as a blank)."""
    write, valid, trimmed = NAMED_BY_A_PATTERN[field]
    parse_manifest(write(valid), "j.yaml")  # the valid value is accepted as it stands
    bad = [valid[:1] + "é" + valid[1:]] + ([] if trimmed else [valid + "\\n"])
    for value in bad:
        with pytest.raises(ManifestError) as caught:
            parse_manifest(write(value), "j.yaml")
        assert caught.value.path, str(caught.value)


@pytest.mark.parametrize("name", ["MO DE", "1ABC", "ÉTÉ", "A:B", "=x"])
def test_an_env_name_akash_s_provider_refuses_is_refused_when_read(name: str) -> None:
    """Akash's provider checks each name (k8s IsEnvVarName) only when the lease starts."""
    error = refused(sub("- MODE=prod", f'- "{name}=1"'))
    assert error.path == "services.web.env[0]" and "environment variable name" in error.message


@pytest.mark.parametrize("name", ["my.var-1", "_X", "-x", "PATH"])
def test_env_names_akash_takes_are_taken(name: str) -> None:
    env = parse_manifest(sub("- MODE=prod", f'- "{name}=1"'), "j.yaml").services["web"].env
    assert (name, "1") in env


@pytest.mark.parametrize(
    "accepts",
    [
        "        accept: [a.example.com, a.example.com]\n",
        "        accept: [a.example.com, A.Example.com]\n",
    ],
)
def test_a_hostname_is_accepted_once_in_the_whole_manifest(accepts: str) -> None:
    """Akash refuses a hostname twice anywhere; within one service it was taken here."""
    text = sub("        as: 80\n", "        as: 80\n" + accepts)
    error = refused(text)
    assert error.path == "services.web.expose[0].accept"
    assert "hostname 'a.example.com' is also accepted again" in error.message
