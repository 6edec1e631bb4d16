"""The SDL parser: what a tenant's manifest turns into, and the one-line errors it gives."""

from __future__ import annotations

import hashlib
import textwrap

import pytest

from marketplace.core.errors import InvalidArgument, NotFound
from marketplace.core.manifest import Manifest, ManifestError, parse_manifest
from marketplace.core.money import per_block_to_per_hour
from marketplace.core.resources import GpuOption, JobKind, Payment, RestartPolicy, Volume
from tests.helpers import BASE


def parse(text: str) -> Manifest:
    return parse_manifest(text, "job.yaml")


def error_of(text: str) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, "job.yaml")
    err = info.value
    assert "\n" not in str(err)
    assert str(err).startswith("job.yaml:")
    return err


def test_base_manifest_becomes_one_group() -> None:
    m = parse_manifest(BASE, "job.yaml")
    assert m.version == "2.0"
    assert m.sdl_sha256 == hashlib.sha256(BASE.encode()).digest()
    assert m.warnings == ()
    (group,) = m.groups
    assert group.name == "dc"
    assert group.denom == "uact"
    assert group.requirements.attributes == (("region", "us-west"),)
    assert group.requirements.signed_by_any_of == ("akash1auditor",)
    (unit,) = group.resources
    assert unit.services == ("web",)
    assert unit.count == 2
    assert unit.cpu_millis == 500
    assert unit.memory_bytes == 512 * 1024**2
    assert unit.storage == (
        Volume("default", 1024**3),
        Volume("data", 10 * 1024**3, persistent=True, storage_class="beta3"),
    )
    assert unit.gpu.units == 2
    assert unit.gpu.options == (GpuOption("h100", 80, "sxm"), GpuOption("a100"))
    assert unit.max_price_per_hour == per_block_to_per_hour(100000)
    assert group.max_price_per_hour == 2 * per_block_to_per_hour(100000)
    assert group.total_gpus == 4
    assert unit.ports == (80,)
    assert m.group("dc") is group
    with pytest.raises(NotFound):
        m.group("nope")


def test_services_carry_what_the_agent_runs() -> None:
    m = parse_manifest(BASE)
    web = m.services["web"]
    assert web.image == "nginx:1.27"
    assert web.command == ("sh", "-c")
    assert web.env == (("MODE", "prod"), ("EMPTY", ""))
    (expose,) = web.expose
    assert (expose.port, expose.as_port, expose.proto, expose.is_global) == (80, 80, "tcp", True)
    assert web.storage[0].volume == "data" and web.storage[0].mount == "/data"
    ((service, count),) = m.workloads("dc")
    assert service is web and count == 2


def test_bytes_and_str_give_the_same_manifest() -> None:
    assert parse_manifest(BASE.encode()).groups == parse_manifest(BASE).groups


def test_manifest_error_is_an_invalid_argument_with_path_and_line() -> None:
    err = error_of(BASE.replace("units: 2", "units: 99"))
    assert isinstance(err, InvalidArgument)
    assert err.path == "profiles.compute.web.resources.gpu.units"
    assert err.line == BASE.splitlines().index("          units: 2") + 1
    assert str(err) == f"job.yaml:{err.line}: {err.path}: {err.message}"


def test_all_errors_are_collected_one_line_each() -> None:
    text = BASE.replace("units: 0.5", "units: -1").replace("- port: 80", "- port: 0")
    err = error_of(text)
    paths = [e.path for e in err.errors]
    assert paths == ["services.web.expose[0].port", "profiles.compute.web.resources.cpu.units"]
    assert str(err) == str(err.errors[0])
    for e in err.errors:
        assert "\n" not in str(e)


# --- version dispatch -----------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2.0", "2.1", "2.2"])
def test_known_versions(version: str) -> None:
    assert parse(BASE.replace('"2.0"', f'"{version}"', 1)).version == version


@pytest.mark.parametrize("written", ['"2"', '"2.3"', '"3"', '"3.0"', '"2.0.0"', '"v2.0"', '"2.10"'])
def test_a_version_is_never_read_as_the_nearest_known_one(written: str) -> None:
    err = error_of(BASE.replace('"2.0"', written, 1))
    assert err.path == "version"
    assert err.message.startswith("unsupported version") and '"2.0", "2.1" or "2.2"' in err.message


def test_an_unquoted_version_is_refused_as_the_schema_types_it() -> None:
    err = error_of(BASE.replace('"2.0"', "2.0", 1))
    assert err.path == "version" and "quote it" in err.message


def test_v21_merges_services_sharing_a_profile() -> None:
    two = BASE.replace(
        "deployment:\n  web:\n",
        "deployment:\n  api:\n    dc:\n      profile: web\n      count: 1\n  web:\n",
    ).replace(
        "services:\n",
        "services:\n  api:\n    image: api:1\n    params:\n      storage:\n        data:\n          mount: /data\n",
        1,
    )
    v20 = parse(two)
    assert [u.services for u in v20.groups[0].resources] == [("api",), ("web",)]
    v21 = parse(two.replace('"2.0"', '"2.1"', 1))
    (unit,) = v21.groups[0].resources
    assert unit.services == ("api", "web") and unit.count == 3
    assert dict((s.name, c) for s, c in v21.workloads("dc")) == {"api": 1, "web": 2}
    replicas = [(r.service.name, r.index, r.unit_index, r.slot) for r in v21.replicas("dc")]
    assert replicas == [("api", 0, 0, 0), ("web", 0, 0, 1), ("web", 1, 0, 2)]
    replicas = [(r.service.name, r.index, r.unit_index, r.slot) for r in v20.replicas("dc")]
    assert replicas == [("api", 0, 0, 0), ("web", 0, 1, 0), ("web", 1, 1, 1)]


@pytest.mark.parametrize("bad", ['"1.0"', '"abc"', '"1.9"'])
def test_unsupported_versions(bad: str) -> None:
    err = error_of(BASE.replace('"2.0"', bad, 1))
    assert err.path == "version" and "unsupported version" in err.message


def test_missing_version() -> None:
    err = error_of(BASE.replace('version: "2.0"\n', ""))
    assert err.message == "no version found"


def test_unknown_top_level_key_is_an_error() -> None:
    err = error_of(BASE + "extra: 1\n")
    assert err.path == "extra" and "unexpected field" in err.message


# --- malformed input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty manifest"),
        ("# only a comment\n", "empty manifest"),
        ("- a\n- b\n", "expected a mapping"),
        ("version: [\n", "invalid YAML"),
        ("a: b\n  c: d\n", "invalid YAML"),
        ("\x00\x01", "invalid YAML"),
        ("version: 2.0\nversion: 2.1\n", "already defined"),
    ],
)
def test_malformed_input(text: str, needle: str) -> None:
    assert needle in error_of(text).message


def test_absurd_nesting_is_an_error_not_a_crash() -> None:
    # deeper than the C loader is trusted with: the Python loader runs and stops cleanly
    assert "nested too deeply" in error_of("a: " + "[" * 500 + "]" * 500).message


def test_binary_bytes() -> None:
    with pytest.raises(ManifestError, match="not UTF-8"):
        parse_manifest(b"\x7fELF\x02\x01\x01\x00\xd0\xff", "a.out")


def test_yaml_error_line_is_reported() -> None:
    err = error_of('version: "2.0"\nservices:\n  web: [\n')
    assert err.line >= 3


# --- GPU rules ----------------------------------------------------------------------------------


def gpu_block(body: str) -> str:
    start = BASE.index("        gpu:\n")
    end = BASE.index("  placement:")
    return BASE[:start] + textwrap.indent(textwrap.dedent(body), " " * 8) + BASE[end:]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("gpu:\n  units: 1\n", "GPU attributes must be present if units > 0"),
        (
            "gpu:\n  units: 0\n  attributes:\n    vendor:\n      nvidia:\n",
            "attributes cannot be present if units == 0",
        ),
        ("gpu:\n  units: 1\n  attributes:\n    vendor: {}\n", "at least one vendor must be set"),
        (
            "gpu:\n  units: 1\n  attributes:\n    foo: 1\n",
            "unsupported attribute (foo) for GPU resource",
        ),
        (
            "gpu:\n  units: 1\n  extra: 1\n  attributes:\n    vendor:\n      nvidia:\n",
            "unsupported field (extra) for GPU resource",
        ),
        (
            "gpu:\n  units: 1\n  attributes:\n    vendor:\n      nvidia:\n        - model: h100\n          interface: nvlink\n",
            'invalid GPU interface nvlink. expected "pcie|sxm"',
        ),
        (
            "gpu:\n  units: 1\n  attributes:\n    vendor:\n      nvidia:\n        - model: h100\n        - model: h100\n",
            "attributes cannot have duplicate keys",
        ),
        ("gpu:\n  units: 1\n  attributes:\n    vendor:\n      amd:\n", "unsupported GPU vendor"),
        ("gpu:\n  units: 25\n  attributes:\n    vendor:\n      nvidia:\n", "invalid unit GPU"),
        (
            "gpu:\n  units: -1\n  attributes:\n    vendor:\n      nvidia:\n",
            "negative value not allowed",
        ),
        (
            "gpu:\n  units: 1\n  attributes:\n    vendor:\n      nvidia:\n        - model: h100\n          ram: 80G\n",
            "invalid GPU ram",
        ),
    ],
)
def test_gpu_rules(body: str, needle: str) -> None:
    err = error_of(gpu_block(body))
    assert needle in err.message
    assert err.path.startswith("profiles.compute.web.resources.gpu")


@pytest.mark.parametrize("nvidia", ["nvidia:\n", "nvidia: []\n"])
def test_null_or_empty_model_list_is_the_wildcard(nvidia: str) -> None:
    body = "gpu:\n  units: 1\n  attributes:\n    vendor:\n      " + nvidia
    (unit,) = parse(gpu_block(body)).groups[0].resources
    assert unit.gpu.options == (GpuOption("*"),)


def test_integer_model_names_become_strings_and_unknown_models_warn() -> None:
    body = (
        "gpu:\n  units: 1\n  attributes:\n    vendor:\n      nvidia:\n"
        '        - model: "4000"\n        - model: a100-80gb\n'
    )
    m = parse(gpu_block(body))
    assert [o.model for o in m.groups[0].resources[0].gpu.options] == ["4000", "a100-80gb"]
    line = gpu_block(body).splitlines().index("                - model: a100-80gb") + 1
    (warning,) = [w for w in m.warnings if "a100-80gb" in w]
    assert warning.startswith(f"job.yaml:{line}: ")
    assert "unknown GPU model 'a100-80gb'" in warning and "did you mean a100 (ram 80Gi)?" in warning
    assert any("'4000'" in w for w in m.warnings)
    unquoted = error_of(gpu_block(body.replace('"4000"', "4000")))
    assert unquoted.path.endswith("nvidia[0].model") and "quote it" in unquoted.message


def test_gpu_ram_is_normalised_to_gi() -> None:
    body = (
        "gpu:\n  units: 1\n  attributes:\n    vendor:\n      nvidia:\n"
        "        - model: a100\n          ram: 40960Mi\n"
    )
    assert parse(gpu_block(body)).groups[0].resources[0].gpu.options == (GpuOption("a100", 40),)


def test_gpu_units_as_a_digit_string() -> None:
    body = 'gpu:\n  units: "1"\n  attributes:\n    vendor:\n      nvidia:\n'
    assert parse(gpu_block(body)).groups[0].resources[0].gpu.units == 1


# --- CPU, memory, storage -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "path", "needle"),
    [
        ("units: 0.5", "units: 5m", "cpu.units", "invalid unit CPU"),
        ("units: 0.5", "units: 385", "cpu.units", "invalid unit CPU"),
        ("units: 0.5", "units: -1", "cpu.units", "negative value not allowed"),
        ("units: 0.5", "units: lots", "cpu.units", "invalid CPU quantity"),
        ("size: 512Mi", "size: 512Ki", "memory.size", "invalid unit memory"),
        ("size: 512Mi", "size: 3Ti", "memory.size", "invalid unit memory"),
        ("size: 512Mi", "size: 1Qi", "memory.size", "invalid size"),
        ("- size: 1Gi", "- size: 1Mi", "storage[0].size", "invalid unit storage"),
        ("size: 10Gi", "size: 33Ti", "storage[1].size", "invalid unit storage"),
    ],
)
def test_resource_limits(old: str, new: str, path: str, needle: str) -> None:
    err = error_of(BASE.replace(old, new, 1))
    assert err.path == f"profiles.compute.web.resources.{path}"
    assert needle in err.message


def test_cpu_attributes_only_arch() -> None:
    text = BASE.replace("units: 0.5\n", "units: 0.5\n          attributes:\n            gen: 9\n")
    assert "unsupported cpu attribute" in error_of(text).message


def test_storage_as_a_single_map_is_the_default_volume() -> None:
    start = BASE.index("        storage:\n")
    end = BASE.index("        gpu:\n")
    text = BASE[:start] + "        storage:\n          size: 2Gi\n" + BASE[end:]
    text = text.replace("    params:\n      storage:\n        data:\n          mount: /data\n", "")
    unit = parse(text).groups[0].resources[0]
    assert unit.storage == (Volume("default", 2 * 1024**3),)


@pytest.mark.parametrize(
    ("attributes", "needle"),
    [
        ("persistent: true\n              class: ram", "ram storage class cannot be persistent"),
        (
            "persistent: false\n              class: beta3",
            "ephemeral storage should not set attribute class",
        ),
        ("persistent: true\n              class: gold", "invalid value for attribute class"),
        ("persistent: maybe\n              class: beta3", "expected true or false"),
    ],
)
def test_storage_class_rules(attributes: str, needle: str) -> None:
    text = BASE.replace("persistent: true\n              class: beta3", attributes)
    assert needle in error_of(text).message


def test_persistent_accepts_string_true() -> None:
    text = BASE.replace(
        "persistent: true\n              class: beta3",
        'persistent: "true"\n              class: default',
    )
    unit = parse(text).groups[0].resources[0]
    assert unit.storage[1] == Volume("data", 10 * 1024**3, persistent=True, storage_class="default")


@pytest.mark.parametrize(
    ("attributes", "missing"),
    [('persistent: "yes"', "class"), ("persistent: true", "class"), ("class: beta3", "persistent")],
)
def test_storage_attributes_name_both_class_and_persistent(attributes: str, missing: str) -> None:
    text = BASE.replace("persistent: true\n              class: beta3", attributes)
    err = error_of(text)
    assert err.path == f"profiles.compute.web.resources.storage[1].attributes.{missing}"
    assert f"need {missing} too" in err.message


def test_a_non_ram_class_needs_persistent_true_exactly() -> None:
    text = BASE.replace("persistent: true\n", 'persistent: "yes"\n')
    assert "ephemeral storage should not set attribute class" in error_of(text).message


def test_ram_volume_not_persistent() -> None:
    ram = "persistent: false\n              class: ram"
    unit = parse(BASE.replace("persistent: true\n              class: beta3", ram)).groups[0]
    assert unit.resources[0].storage[1].storage_class == "ram"
    assert not unit.resources[0].storage[1].persistent
    err = error_of(BASE.replace("persistent: true\n              class: beta3", "class: ram"))
    assert "persistent: false" in err.message


def test_duplicate_volume_names() -> None:
    text = BASE.replace("- name: data\n", "- name: default\n")
    assert "duplicated volume name" in error_of(text).message


def test_persistent_volume_needs_a_mount() -> None:
    text = BASE.replace("    params:\n      storage:\n        data:\n          mount: /data\n", "")
    err = error_of(text)
    assert (
        "has persistent=true which requires service.web.params.storage.data to have mount"
        in err.message
    )


def test_mount_of_a_missing_volume() -> None:
    text = BASE.replace(
        "        data:\n          mount: /data\n",
        "        data:\n          mount: /data\n        logs:\n          mount: /logs\n",
    )
    err = error_of(text)
    assert 'references to no-existing compute volume named "logs"' in err.message.replace("'", '"')
    assert err.path == "services.web.params.storage.logs"


def test_mount_must_be_absolute_and_unique() -> None:
    assert "not absolute" in error_of(BASE.replace("mount: /data", "mount: data")).message


# --- services, expose, endpoints --------------------------------------------------------------


def test_unknown_service_keys_are_refused_not_ignored() -> None:
    # Go's parser drops them; Akash's schema refuses them, and a dropped key runs a different
    # container from the one asked for, so they are refused, each on its own line
    text = BASE.replace(
        "    image: nginx:1.27\n",
        "    image: nginx:1.27\n    depends_on: [db]\n    restart: always\n",
    )
    err = error_of(text)
    assert [e.path for e in err.errors] == ["services.web.depends_on", "services.web.restart"]
    assert "unexpected field 'depends_on'" in err.message and "docker-compose" in err.message


def test_missing_image() -> None:
    err = error_of(BASE.replace("    image: nginx:1.27\n", ""))
    assert err.path == "services.web.image" and "image is required" in err.message


def test_bad_service_name() -> None:
    text = BASE.replace("  web:\n    image", "  Web_1:\n    image")
    assert "invalid service name" in error_of(text).message


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        ("- port: 80", "- port: 70000", "outside 1..65535"),
        ("- port: 80", "- port: eighty", "expected a whole number"),
        ("as: 80", "as: 0", "outside 1..65535"),
        ("- global: true", "- global: true\n            ip: nope", "unknown endpoint 'nope'"),
        ("- global: true", "- ip: nope", "must be declared as global"),
    ],
)
def test_expose_rules(old: str, new: str, needle: str) -> None:
    assert needle in error_of(BASE.replace(old, new)).message


def test_leased_ip_endpoint_used_and_unused() -> None:
    used = (
        BASE.replace("- global: true", "- global: true\n            ip: myip")
        + "endpoints:\n  myip:\n    kind: ip\n"
    )
    m = parse(used)
    assert m.endpoints[0].name == "myip"
    assert m.services["web"].expose[0].to[0].ip == "myip"
    unused = BASE + "endpoints:\n  myip:\n    kind: ip\n"
    assert "declared but never used" in error_of(unused).message


def test_credentials_need_host_username_password() -> None:
    text = BASE.replace(
        "    image: nginx:1.27\n",
        "    image: nginx:1.27\n    credentials:\n      host: r.io\n      username: u\n",
    )
    assert "credentials missing password" in error_of(text).message


def test_env_must_be_a_list() -> None:
    text = BASE.replace(
        "    env:\n      - MODE=prod\n      - EMPTY=\n", "    env:\n      MODE: prod\n"
    )
    assert "KEY=VALUE" in error_of(text).message


# --- placement, pricing, deployment -------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        ("amount: 100000", "amount: 0", "amount is zero"),
        ("amount: 100000", "amount: -5", "invalid coin amount"),
        ("amount: 100000", "amount: 10000001", "over the maximum"),
        ("amount: 100000", "amount: lots", "invalid coin amount"),
        ("denom: uact", "denom: usd", "unsupported denom"),
        ("      profile: web\n", "      profile: nope\n", "no compute profile named 'nope'"),
        ("      count: 2\n", "      count: 0\n", "outside 1.."),
        ("      count: 2\n", "", "count is required"),
        (
            "deployment:\n  web:\n    dc:",
            "deployment:\n  web:\n    elsewhere:",
            "no placement profile named 'elsewhere'",
        ),
        ("deployment:\n  web:", "deployment:\n  ghost:", "no service profile named 'ghost'"),
        (
            "        web:\n          denom",
            "        other:\n          denom",
            "no pricing for profile 'web'",
        ),
    ],
)
def test_placement_and_deployment_rules(old: str, new: str, needle: str) -> None:
    text = BASE.replace(old, new, 1)
    assert text != BASE
    assert needle in error_of(text).message


# --- SDL 2.2: a list of prices per profile, one denomination paid -------------------------------

V22_PRICES = "          - denom: uakt\n            amount: 50\n          - denom: uact\n            amount: 100\n"


def v22(prices: str = V22_PRICES) -> str:
    text = BASE.replace('"2.0"', '"2.2"', 1)
    return text.replace(
        "        web:\n          denom: uact\n          amount: 100000\n", "        web:\n" + prices
    )


def test_v22_list_pricing_pays_in_uact_when_offered() -> None:
    m = parse(v22())
    assert m.version == "2.2" and m.warnings == ()
    (group,) = m.groups
    assert group.denom == "uact"
    assert group.resources[0].max_price_per_hour == per_block_to_per_hour(100)
    assert group.max_price_per_hour == 2 * per_block_to_per_hour(100)


def test_v22_single_coin_and_legacy_only_list() -> None:
    assert parse(BASE.replace('"2.0"', '"2.2"', 1)).groups[0].denom == "uact"
    legacy = parse(v22("          - denom: uakt\n            amount: 50\n"))
    assert legacy.groups[0].denom == "uakt"
    assert legacy.groups[0].resources[0].max_price_per_hour == per_block_to_per_hour(50)
    assert any("uakt is legacy" in w for w in legacy.warnings)


@pytest.mark.parametrize(
    ("text", "path", "needle"),
    [
        (
            v22().replace('"2.2"', '"2.1"', 1),
            "profiles.placement.dc.pricing.web",
            'needs version "2.2"',
        ),
        (
            v22().replace('"2.2"', '"2.0"', 1),
            "profiles.placement.dc.pricing.web",
            'needs version "2.2"',
        ),
        (v22("          []\n"), "profiles.placement.dc.pricing.web", "no coins specified"),
        (
            v22(V22_PRICES.replace("uakt", "uact")),
            "profiles.placement.dc.pricing.web[1].denom",
            "priced twice",
        ),
        (
            v22(V22_PRICES.replace("50", "0")),
            "profiles.placement.dc.pricing.web[0].amount",
            "amount is zero",
        ),
        (
            v22(V22_PRICES.replace("uakt", "usdc")),
            "profiles.placement.dc.pricing.web[0].denom",
            "unsupported denom",
        ),
    ],
)
def test_v22_pricing_errors(text: str, path: str, needle: str) -> None:
    err = error_of(text)
    assert err.path == path and needle in err.message


def test_v22_groups_share_the_one_denomination_all_offer() -> None:
    second = (
        "    dc2:\n      pricing:\n        web:\n          - denom: uakt\n            amount: 70\n"
    )
    text = v22().replace("deployment:\n", second + "deployment:\n")
    text = text.replace(
        "      count: 2\n", "      count: 2\n    dc2:\n      profile: web\n      count: 1\n"
    )
    m = parse(text)
    assert [(g.name, g.denom) for g in m.groups] == [("dc", "uakt"), ("dc2", "uakt")]
    assert m.groups[0].resources[0].max_price_per_hour == per_block_to_per_hour(50)
    only_uact = text.replace("          - denom: uakt\n            amount: 50\n", "")
    assert "inconsistent group denomination" in error_of(only_uact).message


def test_v22_merges_services_sharing_a_profile_as_v21_does() -> None:
    two = (
        v22()
        .replace(
            "deployment:\n  web:\n",
            "deployment:\n  api:\n    dc:\n      profile: web\n      count: 1\n  web:\n",
        )
        .replace(
            "services:\n",
            "services:\n  api:\n    image: api:1\n    params:\n      storage:\n        data:\n          mount: /data\n",
            1,
        )
    )
    (unit,) = parse(two).groups[0].resources
    assert unit.services == ("api", "web") and unit.count == 3


def test_uakt_is_accepted_with_a_warning() -> None:
    m = parse(BASE.replace("denom: uact", "denom: uakt"))
    assert m.groups[0].denom == "uakt"
    assert any("uakt is legacy" in w for w in m.warnings)


def test_decimal_amounts_and_bool_attribute_values() -> None:
    text = BASE.replace("amount: 100000", 'amount: "0.5"').replace(
        "region: us-west", "chia-plotting: true"
    )
    group = parse(text).groups[0]
    assert group.resources[0].max_price_per_hour == per_block_to_per_hour("0.5")
    assert group.requirements.attributes == (("chia-plotting", "true"),)


def test_null_placement_attributes_are_refused_and_empty_ones_allowed() -> None:
    text = BASE.replace("      attributes:\n        region: us-west\n", "      attributes:\n")
    err = error_of(text)
    assert err.path == "profiles.placement.dc.attributes" and "got null" in err.message
    empty = BASE.replace("      attributes:\n        region: us-west\n", "      attributes: {}\n")
    assert parse(empty).groups[0].requirements.attributes == ()


def test_one_denom_for_all_groups() -> None:
    second = (
        "    dc2:\n      pricing:\n        web:\n          denom: uakt\n          amount: 100\n"
    )
    text = BASE.replace("deployment:\n", second + "deployment:\n")
    text = text.replace(
        "      count: 2\n", "      count: 2\n    dc2:\n      profile: web\n      count: 1\n"
    )
    assert "inconsistent group denomination" in error_of(text).message


def test_groups_are_sorted_by_placement_name() -> None:
    second = (
        "    alpha:\n      pricing:\n        web:\n          denom: uact\n          amount: 100\n"
    )
    text = BASE.replace("deployment:\n", second + "deployment:\n")
    text = text.replace(
        "      count: 2\n", "      count: 2\n    alpha:\n      profile: web\n      count: 1\n"
    )
    assert [g.name for g in parse(text).groups] == ["alpha", "dc"]


# --- gpumarket extension keys -------------------------------------------------------------------

EXTENSION = """\
gpumarket:
  kind: training
  max_runtime: 2h
  restart: never
  min_reliability: 0.95
  auction:
    bid_window: 10s
    payment: second-price
    manual: true
"""


def test_extension_keys_fill_job_settings() -> None:
    job = parse(BASE + EXTENSION).job
    assert job.kind is JobKind.TRAINING
    assert job.max_runtime_ms == 7_200_000
    assert job.restart_policy is RestartPolicy.NEVER
    assert job.auction.bid_window_ms == 10_000
    assert job.auction.payment is Payment.SECOND_PRICE
    assert job.auction.manual is True
    assert job.auction.min_reliability == 0.95


def test_without_extension_keys_defaults_apply() -> None:
    job = parse(BASE).job
    assert job.kind is JobKind.SERVICE and job.restart_policy is RestartPolicy.ON_FAILURE
    assert job.max_runtime_ms is None and job.auction.payment is Payment.FIRST_PRICE


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ("kind: training", "kind: mining", "gpumarket.kind"),
        ("max_runtime: 2h", "max_runtime: forever", "gpumarket.max_runtime"),
        ("restart: never", "restart: sometimes", "gpumarket.restart"),
        ("min_reliability: 0.95", "min_reliability: 1.5", "gpumarket.min_reliability"),
        ("bid_window: 10s", "bid_window: 2d", "gpumarket.auction.bid_window"),
        ("payment: second-price", "payment: dutch", "gpumarket.auction.payment"),
        ("kind: training", "kind: training\n  colour: blue", "gpumarket.colour"),
    ],
)
def test_bad_extension_keys(old: str, new: str, path: str) -> None:
    err = error_of(BASE + EXTENSION.replace(old, new))
    assert err.path == path


def test_the_documented_example_is_valid() -> None:
    from tests.helpers import REPO

    doc = (REPO / "docs" / "manifest.md").read_text()
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    m = parse_manifest(example, "docs/manifest.md")
    assert m.warnings == ()
    assert m.job.kind is JobKind.TRAINING and m.job.auction.payment is Payment.SECOND_PRICE


def test_duplicated_mount_point() -> None:
    text = BASE.replace(
        "        data:\n          mount: /data\n",
        "        data:\n          mount: /data\n        default:\n          mount: /data\n",
    )
    assert "duplicated mount point" in error_of(text).message


def test_v21_ram_volume_cannot_be_read_only() -> None:
    text = BASE.replace(
        "persistent: true\n              class: beta3",
        "persistent: false\n              class: ram",
    )
    text = text.replace(
        "          mount: /data\n", "          mount: /data\n          readOnly: true\n"
    )
    assert parse(text).version == "2.0"  # allowed in 2.0
    err = error_of(text.replace('"2.0"', '"2.1"', 1))
    assert 'readOnly=true is not allowed for storage class "ram"' in err.message


def test_port_collision_on_one_leased_ip() -> None:
    expose = (
        "    expose:\n"
        "      - port: 80\n        to:\n          - global: true\n            ip: myip\n"
        "      - port: 8080\n        as: 80\n        to:\n          - global: true\n            ip: myip\n"
    )
    start = BASE.index("    expose:\n")
    end = BASE.index("    params:\n")
    text = BASE[:start] + expose + BASE[end:] + "endpoints:\n  myip:\n    kind: ip\n"
    assert "exposed twice on IP 'myip'" in error_of(text).message


def test_http_options_limits_and_next_cases() -> None:
    opts = "\n        http_options:\n          max_body_size: 104857601\n"
    assert "outside 0..104857600" in error_of(BASE.replace("as: 80", "as: 80" + opts)).message
    cases = "\n        http_options:\n          next_cases: [off, error]\n"
    assert "'off' must be the only" in error_of(BASE.replace("as: 80", "as: 80" + cases)).message
    ok = "\n        http_options:\n          read_timeout: 5000\n          next_cases: ['502']\n"
    expose = parse(BASE.replace("as: 80", "as: 80" + ok)).services["web"].expose[0]
    assert expose.http_options.read_timeout_ms == 5000
    assert expose.http_options.next_cases == ("502",)


def test_tee_adds_a_placement_attribute_and_needs_gpus_for_cpu_gpu() -> None:
    text = BASE.replace("    params:\n", "    params:\n      tee: cpu-gpu\n")
    group = parse(text).groups[0]
    assert ("tee/type", "cpu-gpu") in group.requirements.attributes
    assert (
        "invalid tee type"
        in error_of(BASE.replace("    params:\n", "    params:\n      tee: sgx\n")).message
    )


def test_include_is_refused() -> None:
    assert "include is not supported" in error_of(BASE + "include: [other.yaml]\n").message
