"""Declared packages: --with, requirements files, PEP 751 lock files (compatsolve/sources/declared.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compatsolve.errors import InputError
from compatsolve.sources.declared import parse_lock_file, parse_requirements_file, parse_with


@pytest.mark.parametrize(
    ("value", "name", "version"),
    [
        ("torch==2.4.0", "torch", "2.4.0"),
        ("torch===2.4.0", "torch", "2.4.0"),
        ("Flash_Attn==2.5.8", "flash-attn", "2.5.8"),
        ("torch==2.4.0+cu121", "torch", "2.4.0+cu121"),
        ("torch[opt]==2.4.0", "torch", "2.4.0"),
    ],
)
def test_with_pins(value: str, name: str, version: str) -> None:
    env = parse_with([value])
    assert env.packages is not None and env.packages[name].version == version
    assert env.origins[f"pkg.{name}"] == "--with"
    assert env.packages_complete is False


@pytest.mark.parametrize(
    "value",
    [
        "torch>=2",
        "torch==2.4.*",
        "torch",
        "torch @ https://h.invalid/t.whl",
        "torch==banana",
        "==2.4.0",
        "torch==2.4.0,<3",
    ],
)
def test_with_rejects_non_pins(value: str) -> None:
    with pytest.raises(InputError) as info:
        parse_with([value])
    message = str(info.value)
    assert message.startswith(f"--with {value!r}")
    assert "\n" not in message, "the CLI prints InputError as one line"


def test_with_lenient_warns() -> None:
    env = parse_with(["torch>=2", "vllm==0.5.3"], lenient=True)
    assert list(env.packages or {}) == ["vllm"]
    assert [n.severity for n in env.notices] == ["warning"]


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_requirements_file(tmp_path: Path) -> None:
    _write(tmp_path, "base.txt", "numpy==1.26.4\n")
    path = _write(
        tmp_path,
        "req.txt",
        "# comment\n-r base.txt\n--index-url https://download.pytorch.org/whl/cu121\n"
        "torch==2.4.0 \\\n    --hash=sha256:abc\nvllm>=0.5  # not pinned\n-e ./local\n"
        "transformers==4.41.2 # pinned\nflash-attn==2.5.8; sys_platform == 'linux'\n",
    )
    env = parse_requirements_file(path)
    assert {n: p.version for n, p in (env.packages or {}).items()} == {
        "numpy": "1.26.4",
        "torch": "2.4.0",
        "transformers": "4.41.2",
        "flash-attn": "2.5.8",
    }
    assert env.packages_complete is True
    assert any("vllm" in n.message and "not pinned" in n.message for n in env.notices)


def test_requirements_line_numbers_count_physical_lines(tmp_path: Path) -> None:
    """After a backslash continuation, a later line's number is still its line in the file."""
    path = _write(
        tmp_path, "req.txt", "torch==2.4.0 \\\n    --hash=sha256:abc\nvllm>=0.5\nnot a requirement!\n"
    )
    env_notice_path = _write(tmp_path, "ok.txt", "torch==2.4.0 \\\n    --hash=sha256:abc\nvllm>=0.5\n")
    notices = parse_requirements_file(env_notice_path).notices
    assert any(n.message.startswith("line 3:") for n in notices), [n.message for n in notices]
    with pytest.raises(InputError, match=r"req\.txt:4: "):
        parse_requirements_file(path)


def test_requirements_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"bad\.txt:2: not a requirement"):
        parse_requirements_file(_write(tmp_path, "bad.txt", "torch==2.4.0\nthis is not a requirement!!\n"))
    with pytest.raises(InputError, match="cannot read requirements"):
        parse_requirements_file(_write(tmp_path, "nested.txt", "-r missing.txt\n"))
    with pytest.raises(InputError, match="cannot read requirements"):
        parse_requirements_file(str(tmp_path / "absent.txt"))


def test_requirements_self_include_terminates(tmp_path: Path) -> None:
    env = parse_requirements_file(_write(tmp_path, "self.txt", "-r self.txt\ntorch==2.4.0\n"))
    assert list(env.packages or {}) == ["torch"]


def test_lock_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "pylock.toml",
        'lock-version = "1.0"\n[[packages]]\nname = "Torch"\nversion = "2.4.0"\n'
        '[[packages]]\nname = "numpy"\nversion = "1.26.4"\n',
    )
    env = parse_lock_file(path)
    assert {n: p.version for n, p in (env.packages or {}).items()} == {"torch": "2.4.0", "numpy": "1.26.4"}
    assert env.packages_complete is True


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[[packages]\n", "not TOML"),
        ('lock-version = "1.0"\n', "no [[packages]]"),
        ('[[packages]]\nversion = "1"\n', "packages[0]: expected a table with a name"),
        ('[[packages]]\nname = "torch"\n', "packages[0].version"),
        ('[[packages]]\nname = "torch"\nversion = "banana"\n', "packages[0].version"),
    ],
)
def test_lock_file_errors(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(InputError) as info:
        parse_lock_file(_write(tmp_path, "pylock.toml", text))
    assert fragment in str(info.value)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=40))
def test_with_any_text_is_a_pin_or_one_line_error(value: str) -> None:
    try:
        env = parse_with([value])
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    assert env.packages is not None and len(env.packages) == 1
