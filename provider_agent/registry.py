"""Private registry credentials as the agent uses them: only for the pull of an image whose
registry is the one they name.

Akash hands an SDL service's `credentials` to Kubernetes as an image pull secret keyed by
`host`, and the kubelet offers it only to that registry; so do we. Hosts compare without scheme,
path or letter case; Docker Hub answers to several names (docker.io, index.docker.io,
registry-1.docker.io, registry.hub.docker.com) and is the registry of every image reference whose
first part names no host (`nginx`, `library/nginx`, `bitnami/redis`). A port is part of the host:
credentials for `registry.example:5000` are not offered to `registry.example`.

The password never shows: not in `repr()`, and `scrub` masks it in any text the engine sends back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DOCKER_HUB = "docker.io"
_HUB_ALIASES = frozenset(
    {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
)
MASK = "********"


def canonical_host(host: str) -> str:
    """`https://Index.Docker.io/v1/` -> `docker.io`; `ghcr.io/org` -> `ghcr.io`."""
    text = host.strip().lower()
    for scheme in ("https://", "http://"):
        if text.startswith(scheme):
            text = text[len(scheme) :]
    text = text.split("/", 1)[0]
    return DOCKER_HUB if text in _HUB_ALIASES else text


def image_registry(image: str) -> str:
    """The registry an image reference is pulled from, as Docker reads it: the first part is a
    host only when it holds a `.` or a `:` or is `localhost`."""
    first, slash, _ = image.partition("/")
    if not slash or not ("." in first or ":" in first or first == "localhost"):
        return DOCKER_HUB
    return canonical_host(first)


@dataclass(frozen=True)
class RegistryAuth:
    """One registry's login, from an SDL service's `credentials`."""

    host: str
    username: str
    password: str = field(repr=False)
    email: str | None = None

    def serves(self, image: str) -> bool:
        return canonical_host(self.host) == image_registry(image)

    @property
    def registry(self) -> str:
        return canonical_host(self.host)

    def auth_config(self) -> dict[str, str]:
        """The docker SDK's `auth_config` for a pull."""
        config = {"username": self.username, "password": self.password}
        if self.email:
            config["email"] = self.email
        return config

    def scrub(self, text: str) -> str:
        """`text` with the password masked (an engine's error may quote what it was sent)."""
        return text.replace(self.password, MASK) if self.password else text


def auth_for(
    image: str, host: str, username: str, password: str, email: str | None = None
) -> RegistryAuth | None:
    """The credentials for pulling `image`, or None when they name another registry."""
    auth = RegistryAuth(host, username, password, email)
    return auth if auth.serves(image) else None
