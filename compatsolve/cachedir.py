"""Where compatsolve keeps its caches (the parsed knowledge base, the PyPI snapshot's blobs).

`COMPATSOLVE_CACHE` wins. On Linux the XDG base-directory rule is applied here directly — what
platformdirs' `user_cache_dir("compatsolve")` returns there (a test compares the two) — because
importing platformdirs (tempfile, copy, its platform modules) took about 27 M instructions, 7 %
of a whole `compatsolve plan` run; other systems ask platformdirs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP = "compatsolve"


def cache_dir() -> Path:
    override = os.environ.get("COMPATSOLVE_CACHE")
    if override:
        return Path(override)
    if sys.platform.startswith("linux"):
        # XDG: $XDG_CACHE_HOME when it is an absolute path, else ~/.cache
        base = os.environ.get("XDG_CACHE_HOME", "")
        if not os.path.isabs(base):
            base = os.path.expanduser("~/.cache")
        return Path(base) / APP
    from platformdirs import user_cache_dir

    return Path(user_cache_dir(APP))
