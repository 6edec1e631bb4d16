"""[shell] in the agent's config, and the in-memory runtime's plain refusal of shells."""

from __future__ import annotations

import pytest

from marketplace.core import limits
from provider_agent.config import ConfigError, parse_config
from provider_agent.container import ContainerSpec, RuntimeFailure
from provider_agent.memory_runtime import MemoryRuntime


def test_shell_is_on_by_default_and_can_be_switched_off_and_capped() -> None:
    default = parse_config({}).shell
    assert default.enabled and default.max_copy_bytes == limits.MAX_COPY_BYTES
    off = parse_config({"shell": {"enabled": False, "max_copy_bytes": "500Mi"}}).shell
    assert not off.enabled and off.max_copy_bytes == 500 * 1024 * 1024


@pytest.mark.parametrize(
    ("shell", "message"),
    [
        ({"enabled": "no"}, "shell.enabled: must be true or false"),
        ({"max_copy_bytes": "0"}, "shell.max_copy_bytes: must be between 1 and"),
        ({"max_copy_bytes": "1Ei"}, "shell.max_copy_bytes: must be between 1 and"),
        ({"max_copy_byte": "1Gi"}, "shell.max_copy_byte: unknown key"),
    ],
)
def test_bad_shell_settings_are_refused_by_name(shell: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"shell": shell})


def test_the_memory_runtime_says_plainly_that_it_runs_no_shells() -> None:
    runtime = MemoryRuntime("gm1provider", images=["busybox"])
    state = runtime.launch(ContainerSpec(lease_id="L1", service="web", image="busybox"))
    for attempt in (
        lambda: runtime.exec(state.id, ["sh"], tty=True),
        lambda: runtime.read_file(state.id, "/etc/passwd", 1024),
        lambda: runtime.write_file(state.id, "/tmp/x", 1, [b"x"]),
    ):
        with pytest.raises(RuntimeFailure, match="not supported on the in-memory runtime"):
            attempt()
