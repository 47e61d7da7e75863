"""Writing files safely: atomically, and never over an existing file unless asked."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path

from compatsolve.errors import InputError


def write_atomic(path: str | Path, text: str, *, force: bool = True) -> None:
    """Write `text` to `path` through a temporary file in the same directory and a rename, so
    a reader never sees half a file and a failure leaves the old file intact."""
    target = Path(path)
    if target.exists() and not force:
        raise InputError(f"{target}: exists; pass --force to replace it")
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise InputError(f"{target}: directory {directory} does not exist")
    import tempfile  # here, not at import: the cache readers import this module at start-up

    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=directory)
    except OSError as exc:
        raise InputError(f"{target}: cannot write: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if target.exists():
            os.chmod(tmp, target.stat().st_mode & 0o777)
        else:
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise InputError(f"{target}: cannot write: {exc.strerror}") from None
        raise


def _umask() -> int:
    if sys.platform == "win32":  # pragma: no cover
        return 0
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_text_input(path: str, what: str) -> str:
    """Read a user-given file, or stdin for `-`; any failure is one clear InputError line."""
    try:
        if path == "-":
            return sys.stdin.read()
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    return data.decode("utf-8", errors="replace")


def cache_key(data: bytes) -> str:
    """A 64-bit hex name for a cache file built from `data` (sizes, dates, paths, code).

    Two zlib checksums rather than hashlib: hashlib's import loads OpenSSL, a few milliseconds of
    every start-up, and a cache name needs no cryptographic strength."""
    import zlib

    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


def prune_caches(directory: Path, pattern: str, keep: int = 3) -> None:
    """Remove older cache files matching `pattern`, keeping the `keep` most recently written:
    several installs (venvs, versions) share the user cache directory, and each would otherwise
    delete the others' cache and rebuild its own on every alternate run."""
    try:
        found = sorted(directory.glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return
    for old in found[keep:]:
        old.unlink(missing_ok=True)


def replace_cache(path: Path, chunks: Iterable[bytes], stale: str) -> None:
    """Write `chunks` to the cache file `path` atomically, removing older cache files matching the
    glob `stale` beside it. A cache that cannot be written only costs speed: errors are ignored."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        prune_caches(path.parent, stale)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        try:
            with tmp.open("wb") as handle:
                for chunk in chunks:
                    handle.write(chunk)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError:
        pass


def replace_cache_pickle(path: Path, value: object, stale: str) -> None:
    """`value` as a pickle, through `replace_cache`."""
    import pickle

    replace_cache(path, [pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)], stale)
