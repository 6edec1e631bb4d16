"""Shared test helpers: paths to the repo and ../shared, manifest text, and an await-until helper."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("GPUMARKET_SHARED", REPO.parent / "shared"))
FIXTURES_NVML = SHARED / "fixtures" / "nvml"
CORPUS_SDL = SHARED / "corpus" / "sdl"
EXAMPLES = REPO / "examples"

# A valid SDL v2.0 manifest that exercises most of the grammar; tests mutate it.
BASE = textwrap.dedent(
    """\
    version: "2.0"
    services:
      web:
        image: nginx:1.27
        command: ["sh", "-c"]
        args: ["nginx -g 'daemon off;'"]
        env:
          - MODE=prod
          - EMPTY=
        expose:
          - port: 80
            as: 80
            to:
              - global: true
        params:
          storage:
            data:
              mount: /data
    profiles:
      compute:
        web:
          resources:
            cpu:
              units: 0.5
            memory:
              size: 512Mi
            storage:
              - size: 1Gi
              - name: data
                size: 10Gi
                attributes:
                  persistent: true
                  class: beta3
            gpu:
              units: 2
              attributes:
                vendor:
                  nvidia:
                    - model: h100
                      ram: 80Gi
                      interface: sxm
                    - model: a100
      placement:
        dc:
          attributes:
            region: us-west
          signedBy:
            anyOf:
              - akash1auditor
          pricing:
            web:
              denom: uact
              amount: 100000
    deployment:
      web:
        dc:
          profile: web
          count: 2
    """
)
