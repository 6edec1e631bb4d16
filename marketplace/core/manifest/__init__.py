"""Akash SDL (v2.0 and v2.1) → typed, validated deployments.

`parse_manifest(text, source)` reads an SDL the way Akash's Go parser does
(akash-network/chain-sdk go/sdl; ../shared/reference/akash.md §3) and returns a frozen
`Manifest`: the services to run, one `GroupSpec` per placement profile (one order, one
provider, one lease each) and gpumarket's own optional settings (the top-level `gpumarket:` key;
docs/manifest.md).

Every problem is a `ManifestError` whose str() is one line, "FILE:LINE: field.path: message".
Lines come from YAML's node tree, walked alongside the data; when a field is missing the line
is that of the nearest enclosing node. Where the parser can go on, it collects every problem
(`ManifestError.errors`) so a user fixes a file in one pass.

Inside: `model` (the result types), `errors`, `yaml_lines` (loading with lines), `parser` (the
entry point and top level), one module per SDL section (`services`, `compute`, `placement`,
`deployment`, `extensions`) reading through `context.ParseContext`, and Akash's `limits`.
"""

from marketplace.core.manifest.compute import STORAGE_CLASSES
from marketplace.core.manifest.errors import ManifestError
from marketplace.core.manifest.limits import (
    CPU_MAX_MILLIS,
    CPU_MIN_MILLIS,
    GPU_MAX_UNITS,
    GROUP_FACTOR,
    MEMORY_MAX,
    MEMORY_MIN,
    PRICE_MAX,
    VOLUME_MAX,
    VOLUME_MIN,
)
from marketplace.core.manifest.model import (
    Credentials,
    Endpoint,
    Expose,
    ExposeTo,
    HttpOptions,
    Manifest,
    Replica,
    Service,
    ServiceDeployment,
    StorageMount,
)
from marketplace.core.manifest.parser import parse_manifest
from marketplace.core.manifest.services import HTTP_NEXT_CASES, PERMISSIONS

__all__ = [
    "CPU_MAX_MILLIS",
    "CPU_MIN_MILLIS",
    "GPU_MAX_UNITS",
    "GROUP_FACTOR",
    "HTTP_NEXT_CASES",
    "MEMORY_MAX",
    "MEMORY_MIN",
    "PERMISSIONS",
    "PRICE_MAX",
    "STORAGE_CLASSES",
    "VOLUME_MAX",
    "VOLUME_MIN",
    "Credentials",
    "Endpoint",
    "Expose",
    "ExposeTo",
    "HttpOptions",
    "Manifest",
    "ManifestError",
    "Replica",
    "Service",
    "ServiceDeployment",
    "StorageMount",
    "parse_manifest",
]
