"""SDL quantities read the way Akash's parser reads them."""

from __future__ import annotations

import pytest

from marketplace.core import units


@pytest.mark.parametrize(
    ("text", "millis"),
    [("100m", 100), (0.5, 500), (1, 1000), ("2", 2000), ("0.25", 250), (1.0, 1000), (64, 64000)],
)
def test_cpu_units(text: object, millis: int) -> None:
    assert units.parse_cpu(text) == millis


@pytest.mark.parametrize("bad", ["-1", "-100m", "abc", "1.5m", "", True, None, [1], "1e999"])
def test_bad_cpu_is_a_value_error(bad: object) -> None:
    with pytest.raises(ValueError):
        units.parse_cpu(bad)


def test_negative_cpu_message_is_akashs() -> None:
    with pytest.raises(ValueError, match="negative value not allowed"):
        units.parse_cpu(-1)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512Mi", 512 * 1024**2),
        ("1Gi", 1024**3),
        ("1G", 10**9),
        ("100M", 10**8),
        ("1k", 1000),
        ("1Ki", 1024),
        ("2Ti", 2 * 1024**4),
        ("1Ei", 1024**6),
        ("1E", 10**18),
        ("1.5Gi", 3 * 1024**3 // 2),
        ("2gb", 2 * 10**9),  # real SDLs write this; Akash accepts it
        ("512MiB", 512 * 1024**2),
        (1024, 1024),
        ("4096", 4096),
    ],
)
def test_sizes(text: object, size: int) -> None:
    assert units.parse_size(text) == size


@pytest.mark.parametrize("bad", ["-1Gi", "1Qi", "Gi", "1 parsec", "1i", "ten", "", None, "1e5"])
def test_bad_sizes(bad: object) -> None:
    with pytest.raises(ValueError):
        units.parse_size(bad)


@pytest.mark.parametrize(("text", "gib"), [("80Gi", 80), ("40960Mi", 40), ("1Ti", 1024)])
def test_gpu_ram_whole_gi(text: str, gib: int) -> None:
    assert units.parse_gpu_ram(text) == gib


@pytest.mark.parametrize("bad", ["80G", "80GB", "80", "80.5Gi", "100Mi", "0Gi", "x"])
def test_gpu_ram_needs_binary_whole_gi(bad: str) -> None:
    with pytest.raises(ValueError):
        units.parse_gpu_ram(bad)


@pytest.mark.parametrize(
    ("text", "ms"),
    [("10s", 10_000), ("90m", 5_400_000), ("2h", 7_200_000), ("1d", 86_400_000), (30, 30_000)],
)
def test_durations(text: object, ms: int) -> None:
    assert units.parse_duration_ms(text) == ms


@pytest.mark.parametrize("bad", ["0s", "-1h", "1w", "h", 1.5, True, None, "99999999999h"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        units.parse_duration_ms(bad)


def test_formatting_round_trips_for_people() -> None:
    assert units.format_cpu(500) == "0.5"
    assert units.format_cpu(64000) == "64"
    assert units.format_size(512 * 1024**2) == "512Mi"
    assert units.format_size(80 * 1024**3) == "80Gi"
    assert units.format_duration(5_400_000) == "90m"
