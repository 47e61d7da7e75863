"""Command line: argparse, and nothing else. Each command parses, calls one plain function of the
core, renders, and returns an exit code. Imports are lazy so `--help` stays fast."""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from compatsolve.engines import ENGINES, PLAN_ENGINES, canonical_engine
from compatsolve.quantization import PLAN_QUANTIZATIONS, QUANTIZATIONS, canonical_quantization

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


def _terminal_columns() -> int:
    """shutil.get_terminal_size().columns without importing shutil (it loads bz2 and lzma; argparse
    imports it for every option it adds, to format them)."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    stdout = sys.__stdout__
    try:
        return (os.get_terminal_size(stdout.fileno()).columns or 80) if stdout is not None else 80
    except (AttributeError, ValueError, OSError):
        return 80


class _Formatter(argparse.HelpFormatter):
    def __init__(
        self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None
    ) -> None:
        super().__init__(prog, indent_increment, max_help_position, width or _terminal_columns() - 2)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> Any:  # one line, exit 2 (argparse's own contract too)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _environment_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("environment (any mix; explicit flags win over reports)")
    group.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="SPEC",
        help="a machine described by hand: 'A100-80GB,count=8,driver=535.104.05' (see docs/environment.md)",
    )
    group.add_argument(
        "--from",
        dest="from_files",
        action="append",
        default=[],
        metavar="FILE",
        help="a snapshot saved by `compatsolve probe --save`",
    )
    group.add_argument(
        "--report",
        action="append",
        default=[],
        metavar="FILE",
        help="an environment report pasted from a bug report (collect_env, "
        "transformers env, pip list, nvidia-smi, ...); '-' reads stdin",
    )
    group.add_argument(
        "--with",
        dest="with_packages",
        action="append",
        default=[],
        metavar="NAME==VERSION",
        help="a declared package (repeatable)",
    )
    group.add_argument(
        "-r",
        "--requirements",
        action="append",
        default=[],
        metavar="FILE",
        help="declared packages from a requirements file",
    )
    group.add_argument(
        "--lock",
        action="append",
        default=[],
        metavar="FILE",
        help="declared packages from a PEP 751 pylock.toml",
    )
    group.add_argument(
        "--python",
        dest="python_path",
        metavar="PATH",
        help="judge another interpreter's environment (read, never executed)",
    )
    group.add_argument(
        "--site-packages",
        action="append",
        default=[],
        metavar="DIR",
        help="judge the distributions installed in DIR",
    )


def _run_options(parser: argparse.ArgumentParser, *, plan: bool = False) -> None:
    group = parser.add_argument_group("workload")
    group.add_argument("--model", help="catalog name, loose spelling or Hugging Face repo id")
    group.add_argument("--stage", choices=["inference", "fine-tuning"])
    # plan solves for the engines it can pin; audit and diagnose take any engine name
    group.add_argument(
        "--engine",
        type=lambda text: _engine(text, PLAN_ENGINES if plan else None),
        metavar="{" + ",".join(PLAN_ENGINES if plan else ENGINES) + "}",
        help=None if plan else "or any other engine's name (reported as a fact the rules do not know)",
    )
    group.add_argument("--method", choices=["full", "lora", "qlora"])
    group.add_argument("--dtype", choices=["auto", "float16", "bfloat16", "float32"])
    accepted = PLAN_QUANTIZATIONS if plan else QUANTIZATIONS
    group.add_argument(
        "--quantization",
        type=lambda text: _quantization(text, accepted),
        metavar="{" + ",".join(accepted) + "}",
        help="or a llama.cpp type such as Q4_K_M (read as gguf)",
    )
    group.add_argument("--context", type=_positive_int, metavar="TOKENS")
    if not plan:
        group.add_argument(
            "--attention", choices=["flash_attention_2", "sdpa", "eager", "xformers", "flashinfer"]
        )
    if not plan:
        group.add_argument("--tp", type=_positive_int, metavar="N", help="tensor-parallel size")


def _quantization(text: str, accepted: tuple[str, ...]) -> str:
    name = canonical_quantization(text)
    if name not in accepted:
        raise argparse.ArgumentTypeError(f"quantization {text!r} is not one of {', '.join(accepted)}")
    return name


def _engine(text: str, accepted: tuple[str, ...] | None) -> str:
    name = canonical_engine(text)
    if name is None:
        raise argparse.ArgumentTypeError(f"engine {text!r} is not a name (letters, digits, '.', '+', '-')")
    if accepted is not None and name not in accepted:
        raise argparse.ArgumentTypeError(f"engine {text!r} is not one of {', '.join(accepted)}")
    return name


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def _probe_options(probe: argparse.ArgumentParser) -> None:
    _environment_options(probe)
    probe.add_argument("--format", choices=["table", "json"], default="table")
    probe.add_argument("--save", metavar="FILE", help="write the snapshot as JSON (atomic)")
    probe.add_argument("--force", action="store_true", help="replace an existing --save file")


def _plan_options(plan: argparse.ArgumentParser) -> None:
    _environment_options(plan)
    _run_options(plan, plan=True)
    plan.add_argument(
        "--keep",
        action="append",
        default=[],
        metavar="NAME==VERSION",
        help="hold a package the user cannot change",
    )
    plan.add_argument("--prefer", choices=["newest", "stable"], default="stable")
    plan.add_argument(
        "--python-version",
        dest="plan_python",
        metavar="X.Y",
        help="plan for this Python (default: the machine's)",
    )
    plan.add_argument(
        "--format", choices=["table", "json", "pylock", "requirements", "constraints"], default="table"
    )
    plan.add_argument("-o", "--output", metavar="FILE", help="write the plan in --format to FILE")
    plan.add_argument("--force", action="store_true", help="replace an existing output file")
    plan.add_argument("--explain", action="store_true", help="print the whole derivation")


def _check_options(cmd: argparse.ArgumentParser) -> None:
    _environment_options(cmd)
    _run_options(cmd)
    cmd.add_argument("--error", metavar="TEXT", help="the error message or traceback")
    cmd.add_argument("--log", metavar="FILE", help="a log or traceback file ('-' for stdin)")
    cmd.add_argument("--format", choices=["table", "json", "markdown"], default="table")


def _kb_options(kb: argparse.ArgumentParser) -> None:
    kb_sub = kb.add_subparsers(dest="kb_command", required=True, parser_class=_Parser)
    kb_sub.add_parser("lint", help="validate knowledge/ (exit 1 on problems)")
    stats = kb_sub.add_parser("stats", help="counts per kind, stage, tier; corpus coverage")
    stats.add_argument("--format", choices=["table", "json"], default="table")
    show = kb_sub.add_parser("show", help="one rule in full")
    show.add_argument("rule_id")
    search = kb_sub.add_parser("search", help="rules mentioning every word of TEXT")
    search.add_argument("text", nargs="+")
    refresh = kb_sub.add_parser("refresh", help="refresh PyPI metadata into the user cache")
    refresh.add_argument(
        "--snapshot",
        action="store_true",
        help="write the shipped snapshot (knowledge/snapshot/) instead: maintainers",
    )
    refresh.add_argument(
        "--apis",
        action="store_true",
        help="rescan the stack releases for their Python API (knowledge/snapshot/apis.json.gz)",
    )
    refresh.add_argument("--workers", type=_positive_int, default=16)


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "probe": ("what this machine and Python environment are", _probe_options),
    "plan": ("a known-good pinned stack for a model, stage and machine", _plan_options),
    "audit": ("judge an environment and explain each problem", _check_options),
    "diagnose": ("map an error message to its known root causes", _check_options),
    "kb": ("the knowledge base: lint, stats, show, search, refresh", _kb_options),
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command line parser. Given the arguments, only the named command's options are
    built (argparse formats every option it adds, a noticeable part of a short command's run);
    the other commands are still listed, so the help and the errors read the same."""
    from compatsolve import __version__

    parser = _Parser(
        prog="compatsolve",
        description=(
            "Known-good LLM stacks for your hardware: probe the machine, plan a pinned stack, "
            "audit an environment, diagnose an error."
        ),
    )
    parser.add_argument("--version", action="version", version=f"compatsolve {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    wanted = argv[0] if argv and argv[0] in COMMANDS else None
    for name, (text, add_options) in COMMANDS.items():
        command = sub.add_parser(name, help=text)
        if wanted in (None, name):
            add_options(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # A run builds ~100k long-lived objects (knowledge base, snapshot) and little garbage; at the
    # default threshold the cyclic collector walks them dozens of times (~5 % of a plan run).
    # Collections still happen, so a long command (kb refresh) stays bounded in memory.
    gc.set_threshold(100_000, 50, 100)
    arguments = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(arguments).parse_args(arguments)
    from compatsolve.errors import InputError, KnowledgeError

    try:
        return _dispatch(args)
    except InputError as exc:
        print(f"compatsolve: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KnowledgeError as exc:
        print(f"compatsolve: knowledge base error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def run() -> None:
    """The `compatsolve` command: `main`, then exit without the interpreter's final garbage
    collection (it walks every object still alive only to free memory the OS reclaims anyway;
    files are flushed and closed first either way)."""
    code = main()
    gc.disable()
    raise SystemExit(code)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "kb":
        return _kb(args)
    from compatsolve import commands

    handler = getattr(commands, args.command)
    return int(handler(args))


def _kb(args: argparse.Namespace) -> int:
    from compatsolve import kb as kbtools
    from compatsolve.knowledge import knowledge_dir, load

    root = knowledge_dir()
    if args.kb_command == "lint":
        tests_dir = root.parent / "tests" / "rule_cases"
        problems = kbtools.lint(root, tests_dir if tests_dir.is_dir() else None)
        for problem in problems:
            print(problem)
        if problems:
            print(f"{len(problems)} problem(s)", file=sys.stderr)
            return EXIT_FINDINGS
        kb = load(root)
        print(
            f"ok: {len(kb.rules)} rules, {len(kb.gpus)} NVIDIA and {len(kb.amd_gpus)} AMD GPUs, "
            f"{len(kb.models)} models, "
            f"{len(kb.torch)} torch releases, {len(kb.cuda)} CUDA releases"
        )
        return EXIT_OK
    from compatsolve.outputs import kbview

    kb = load(root)
    if args.kb_command == "stats":
        from compatsolve.snapshot import snapshot_summary

        data = kbtools.stats(kb, snapshot_summary())
        kbview.render_stats(data, args.format)
        return EXIT_OK
    if args.kb_command == "show":
        rule = kb.rule(args.rule_id)
        if rule is None:
            from compatsolve.errors import InputError

            close = [r.id for r in kbtools.search(kb, args.rule_id.replace("-", " "))][:5]
            raise InputError(
                f"no rule {args.rule_id!r}" + (f"; did you mean: {', '.join(close)}?" if close else "")
            )
        kbview.render_rule(rule)
        return EXIT_OK
    if args.kb_command == "search":
        kbview.render_rule_list(kbtools.search(kb, " ".join(args.text)))
        return EXIT_OK
    if args.kb_command == "refresh":
        if args.apis:
            from compatsolve import api_scan

            return api_scan.refresh_command(workers=args.workers, root=Path(root))
        from compatsolve import pypi

        return pypi.refresh_command(shipped=args.snapshot, workers=args.workers, root=Path(root))
    raise AssertionError(args.kb_command)
