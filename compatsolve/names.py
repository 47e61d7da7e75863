"""Project names as PEP 503 normalizes them.

The same result as `packaging.utils.canonicalize_name`, without importing `packaging.utils`:
that module pulls in `packaging.tags` and with it `logging`, `platform` and `sysconfig`, a fifth of
the start-up of a `compatsolve plan` run that only needs the one regular expression below.
"""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[-_.]+")


def canonicalize_name(name: str) -> str:
    """`Flash_Attn` -> `flash-attn`: runs of `-`, `_`, `.` become one `-`, letters lowercase."""
    return _SEPARATORS.sub("-", name).lower()
