"""Installed distributions read from metadata, never imported (compatsolve/sources/installed.py).

Tests build small fake site-packages directories in tmp_path; one test reads the real throwaway
venv /tmp/fxenv that tests/fixtures/README.md describes, when it exists on this machine.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.utils import canonicalize_name

from compatsolve.errors import InputError
from compatsolve.sources.installed import (
    iter_distributions,
    read_distributions,
    read_metadata_headers,
    read_torch_build,
    site_dirs_of_interpreter,
)

FXENV = Path("/tmp/fxenv")


def _dist(
    site: Path,
    name: str,
    version: str,
    *,
    extra: str = "",
    installer: str | None = "pip",
    folder: str | None = None,
) -> Path:
    info = site / (folder or f"{name.replace('-', '_')}-{version}.dist-info")
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{extra}\nLong description body\n"
        "Name: not-the-name\nVersion: 0.0.0\n",
        encoding="utf-8",
    )
    if installer is not None:
        (info / "INSTALLER").write_text(installer + "\n")
    return info


# ------------------------------------------------------------------ METADATA headers


def test_metadata_headers_stop_at_body(tmp_path: Path) -> None:
    meta = tmp_path / "METADATA"
    meta.write_text(
        "Metadata-Version: 2.1\nName: Flash_Attn\nVersion: 2.5.8\n"
        "Requires-Dist: torch\nRequires-Dist: einops ; extra == 'x'\n"
        "Requires-Python: >=3.8\nDescription: first line\n        continued line: with colon\n"
        "\nBody: this is the long description and not a header\n",
        encoding="utf-8",
    )
    headers = read_metadata_headers(meta)
    assert headers["name"] == ["Flash_Attn"]
    assert headers["version"] == ["2.5.8"]
    assert headers["requires-dist"] == ["torch", "einops ; extra == 'x'"]
    assert headers["requires-python"] == [">=3.8"]
    assert headers["description"] == ["first line"]
    assert "body" not in headers
    assert "continued line" not in headers


def test_metadata_headers_crlf_and_bad_bytes(tmp_path: Path) -> None:
    meta = tmp_path / "METADATA"
    meta.write_bytes(b"Name: caf\xe9\r\nVersion: 1.0\r\n\r\nName: body\r\n")
    headers = read_metadata_headers(meta)
    assert headers["version"] == ["1.0"]
    assert headers["name"][0].startswith("caf")
    assert len(headers["name"]) == 1


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=400))
def test_metadata_headers_never_crash(text: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        meta = Path(d) / "METADATA"
        meta.write_text(text, encoding="utf-8", errors="surrogatepass")
        headers = read_metadata_headers(meta)
        assert all(k == k.lower() for k in headers)


# ------------------------------------------------------------------ distributions


def test_iter_distributions_reads_dist_and_egg_info(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    _dist(site, "Flash_Attn", "2.5.8", extra="Requires-Dist: torch\nRequires-Python: >=3.8")
    _dist(site, "torch", "2.4.0+cu121", installer=None)
    egg_dir = site / "old_pkg.egg-info"
    egg_dir.mkdir()
    (egg_dir / "PKG-INFO").write_text("Name: Old.Pkg\nVersion: 0.1\n\n")
    (site / "single-1.0.egg-info").write_text("Metadata-Version: 1.0\nName: single\nVersion: 1.0\n\n")
    broken = site / "broken-1.0.dist-info"
    broken.mkdir()  # no METADATA at all
    noversion = site / "nover-1.0.dist-info"
    noversion.mkdir()
    (noversion / "METADATA").write_text("Name: nover\n\n")
    (site / "torch").mkdir()  # a package directory, not metadata
    found = {p.name: p for p in iter_distributions(site)}
    assert set(found) == {"flash-attn", "torch", "old-pkg", "single"}
    assert found["flash-attn"].version == "2.5.8"
    assert found["flash-attn"].requires == ("torch",)
    assert found["flash-attn"].requires_python == ">=3.8"
    assert found["flash-attn"].installer == "pip"
    assert found["torch"].version == "2.4.0+cu121"  # local label kept
    assert found["torch"].installer is None


def test_iter_distributions_missing_dir_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read site-packages"):
        list(iter_distributions(tmp_path / "nope"))


def test_read_distributions_first_site_wins(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    _dist(first, "torch", "2.4.0")
    _dist(second, "torch", "2.1.0")
    _dist(second, "numpy", "1.26.4")
    found = read_distributions([first, second])
    assert found["torch"].version == "2.4.0"
    assert found["numpy"].version == "1.26.4"


# ------------------------------------------------------------------ torch/version.py


def _version_py(site: Path, text: str) -> None:
    (site / "torch").mkdir(parents=True, exist_ok=True)
    (site / "torch" / "version.py").write_text(text, encoding="utf-8")


@pytest.mark.parametrize(
    ("text", "version", "cuda", "git", "hip"),
    [
        (
            "__version__ = '2.4.0+cu121'\ndebug = False\ncuda: Optional[str] = '12.1'\n"
            "git_version = 'abc123'\nhip: Optional[str] = None\n",
            "2.4.0+cu121",
            "12.1",
            "abc123",
            None,
        ),
        (
            "from typing import Optional\n__all__ = ['__version__']\n__version__ = \"2.3.1+cpu\"\n"
            "cuda = None\nhip = None\n",
            "2.3.1+cpu",
            None,
            None,
            None,
        ),
        (
            "__version__ = '2.3.0+rocm6.0'\ncuda = None\nhip = '6.0.32830'\n",
            "2.3.0+rocm6.0",
            None,
            None,
            "6.0.32830",
        ),
        ("__version__: str = '2.5.0'\ncuda: Optional[str] = '12.4'\n", "2.5.0", "12.4", None, None),
    ],
)
def test_read_torch_build(tmp_path: Path, text: str, version: str, cuda, git, hip) -> None:
    _version_py(tmp_path, text)
    build = read_torch_build([tmp_path])
    assert build is not None
    assert (build.version, build.cuda, build.git_version, build.hip) == (version, cuda, git, hip)


def test_read_torch_build_is_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    _version_py(tmp_path, f"open({str(marker)!r}, 'w').close()\n__version__ = '2.4.0'\ncuda = '12.1'\n")
    build = read_torch_build([tmp_path])
    assert build is not None and build.version == "2.4.0" and build.cuda == "12.1"
    assert not marker.exists()


def test_read_torch_build_absent(tmp_path: Path) -> None:
    assert read_torch_build([tmp_path]) is None
    _version_py(tmp_path, "cuda = '12.1'\n")  # no __version__
    assert read_torch_build([tmp_path]) is None


def test_read_torch_build_first_site_with_torch(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    _version_py(b, "__version__ = '2.2.0'\ncuda = '11.8'\n")
    build = read_torch_build([a, b])
    assert build is not None and build.cuda == "11.8"


# ------------------------------------------------------------------ another interpreter


def _fake_venv(root: Path, pyver: str = "3.11", cfg_version: str | None = "3.11.7") -> Path:
    (root / "bin").mkdir(parents=True)
    python = root / "bin" / "python"
    python.write_text("#!/bin/sh\necho 'must not run' > " + str(root / "RAN") + "\n")
    python.chmod(0o755)
    site = root / "lib" / f"python{pyver}" / "site-packages"
    site.mkdir(parents=True)
    if cfg_version is not None:
        (root / "pyvenv.cfg").write_text(
            f"home = /usr/bin\ninclude-system-site-packages = false\nversion = {cfg_version}\n"
        )
    return python


def test_site_dirs_of_fake_venv(tmp_path: Path) -> None:
    python = _fake_venv(tmp_path / "venv")
    dirs, version = site_dirs_of_interpreter(python)
    assert dirs == [tmp_path / "venv" / "lib" / "python3.11" / "site-packages"]
    assert version == "3.11.7"
    assert not (tmp_path / "venv" / "RAN").exists()


def test_site_dirs_version_from_path_without_cfg(tmp_path: Path) -> None:
    python = _fake_venv(tmp_path / "env", pyver="3.10", cfg_version=None)
    dirs, version = site_dirs_of_interpreter(python)
    assert version == "3.10"
    assert dirs[0].name == "site-packages"


def test_site_dirs_version_info_key(tmp_path: Path) -> None:
    python = _fake_venv(tmp_path / "uvenv", cfg_version=None)
    (tmp_path / "uvenv" / "pyvenv.cfg").write_text(
        "home = /x\nimplementation = CPython\nversion_info = 3.12.4\n"
    )
    assert site_dirs_of_interpreter(python)[1] == "3.12.4"


def test_site_dirs_lib64(tmp_path: Path) -> None:
    python = _fake_venv(tmp_path / "v")
    lib64 = tmp_path / "v" / "lib64" / "python3.11" / "site-packages"
    lib64.mkdir(parents=True)
    dirs, _ = site_dirs_of_interpreter(python)
    assert lib64 in dirs


def test_site_dirs_windows_layout(tmp_path: Path) -> None:
    scripts = tmp_path / "winenv" / "Scripts"
    scripts.mkdir(parents=True)
    python = scripts / "python.exe"
    python.write_text("")
    site = tmp_path / "winenv" / "Lib" / "site-packages"
    site.mkdir(parents=True)
    dirs, _ = site_dirs_of_interpreter(python)
    assert dirs == [site]


def test_site_dirs_missing_interpreter(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such interpreter"):
        site_dirs_of_interpreter(tmp_path / "bin" / "python")


def test_site_dirs_no_site_packages(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    python = tmp_path / "bin" / "python"
    python.write_text("")
    with pytest.raises(InputError, match="found no site-packages"):
        site_dirs_of_interpreter(python)


def test_fake_venv_end_to_end(tmp_path: Path) -> None:
    python = _fake_venv(tmp_path / "venv")
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    _dist(site, "torch", "2.4.0+cu121")
    _dist(site, "nvidia-cublas-cu12", "12.1.3.1")
    _version_py(site, "__version__ = '2.4.0+cu121'\ncuda: Optional[str] = '12.1'\n")
    from compatsolve.sources.assemble import _other_interpreter

    env = _other_interpreter(python)
    facts = env.facts()
    assert facts["pkg.torch"] == "2.4.0"
    assert facts["torch.cuda"] == "12.1" and facts["torch.variant"] == "cu121"
    assert facts["nvidia.cu12"] is True and facts["nvidia.cu13"] is False
    assert facts["python.version"] == "3.11.7"
    assert facts["_packages_complete"] is True


# ------------------------------------------------------------------ the real throwaway venv


@pytest.mark.skipif(not (FXENV / "bin" / "python").exists(), reason="/tmp/fxenv not built on this machine")
def test_real_fxenv() -> None:
    dirs, version = site_dirs_of_interpreter(FXENV / "bin" / "python")
    assert any(d.name == "site-packages" for d in dirs)
    cfg = (FXENV / "pyvenv.cfg").read_text()
    expected_version = re.search(r"^version(?:_info)?\s*=\s*(\S+)", cfg, re.M)
    assert expected_version and version == expected_version.group(1)
    found = read_distributions(dirs)
    expected = {}
    for d in dirs:
        for info in d.glob("*.dist-info"):
            head = (info / "METADATA").read_text(encoding="utf-8", errors="replace").split("\n\n", 1)[0]
            name = re.search(r"^Name: (.+)$", head, re.M).group(1).strip()
            expected.setdefault(
                canonicalize_name(name), re.search(r"^Version: (.+)$", head, re.M).group(1).strip()
            )
    assert expected and {k: p.version for k, p in found.items()} == expected
    if "torch" in found:
        build = read_torch_build(dirs)
        assert build is not None
        text = next(
            d / "torch" / "version.py" for d in dirs if (d / "torch" / "version.py").exists()
        ).read_text()
        assert build.version == re.search(r"^__version__\s*=\s*'([^']+)'", text, re.M).group(1)
        assert found["torch"].version == build.version
