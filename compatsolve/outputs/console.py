"""The shared rich console (stdout), created on first use so importing stays cheap."""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def print_json(data: Any) -> None:
    import json
    import sys

    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
