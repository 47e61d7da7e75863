"""One function per command: turn parsed arguments into a request, call the core, render.

This is the only module besides cli.py that knows about argparse namespaces.
"""

from __future__ import annotations

import argparse
import json

from compatsolve.environment import Environment, RunSettings
from compatsolve.errors import InputError
from compatsolve.knowledge import Knowledge, load
from compatsolve.sources.assemble import EnvironmentRequest, build_environments


def _request(
    args: argparse.Namespace, *, strict_model: bool, error_text: str | None = None
) -> EnvironmentRequest:
    quantization = getattr(args, "quantization", None)
    run = RunSettings(
        model=getattr(args, "model", None),
        stage=getattr(args, "stage", None),
        engine=getattr(args, "engine", None),
        method=getattr(args, "method", None),
        dtype=getattr(args, "dtype", None),
        quantization=quantization,
        attention=getattr(args, "attention", None),
        tp=getattr(args, "tp", None),
        context=getattr(args, "context", None),
    )
    return EnvironmentRequest(
        targets=tuple(args.target),
        from_files=tuple(args.from_files),
        reports=tuple(args.report),
        with_packages=tuple(args.with_packages),
        requirements=tuple(args.requirements),
        locks=tuple(args.lock),
        python_path=args.python_path,
        site_packages=tuple(args.site_packages),
        run=run,
        lenient=not strict_model,
        error_text=error_text,
    )


def _one_environment(
    args: argparse.Namespace, kb: Knowledge, *, strict_model: bool, error_text: str | None = None
) -> Environment:
    envs = build_environments(_request(args, strict_model=strict_model, error_text=error_text), kb)
    if len(envs) != 1:
        raise InputError(f"{args.command} judges one machine; got {len(envs)} (--target/--from)")
    return envs[0]


def probe(args: argparse.Namespace) -> int:
    from compatsolve.fileio import write_atomic
    from compatsolve.sources.snapshot import to_document

    kb = load()
    env = _one_environment(args, kb, strict_model=True)
    facts = {k: v for k, v in env.facts(kb).items() if not k.startswith("_")}
    document = to_document(env, facts)
    if args.save:
        write_atomic(args.save, json.dumps(document, indent=2) + "\n", force=args.force)
    if args.format == "json":
        from compatsolve.outputs.console import print_json

        print_json(document)
    else:
        from compatsolve.outputs.probe import render

        render(env, facts)
        if args.save:
            print(f"snapshot written to {args.save}")
    return 0


def _error_text(args: argparse.Namespace) -> str | None:
    from compatsolve.fileio import read_text_input

    if args.error is not None and args.log is not None:
        raise InputError("give --error or --log, not both")
    if args.log is not None:
        return read_text_input(args.log, "log")
    return str(args.error) if args.error is not None else None


def audit(args: argparse.Namespace) -> int:
    return _judge(args, full_audit=True)


def diagnose(args: argparse.Namespace) -> int:
    return _judge(args, full_audit=False)


def _judge(args: argparse.Namespace, *, full_audit: bool) -> int:
    from compatsolve import audit as auditing
    from compatsolve import diagnose as diagnosing
    from compatsolve.api_history import load_history
    from compatsolve.outputs import findings as view
    from compatsolve.snapshot import published

    error = _error_text(args)
    if not full_audit and error is None:
        raise InputError("diagnose needs --error TEXT or --log FILE")
    kb = load()
    env = _one_environment(args, kb, strict_model=False, error_text=error)
    judged = auditing.audit(env, kb)
    findings, ruled_out = judged.findings, list[str]()
    if error is not None:
        if full_audit:
            extra = judged.findings
        else:  # the facts' own problems only where the message names them
            conflicts = diagnosing.reported_conflicts(error, judged.findings)
            extra = auditing.unresolved_findings(env) + conflicts
        findings, ruled_out = diagnosing.diagnose(
            error,
            judged.facts,
            kb,
            extra=extra,
            environment=judged.findings,
            published=published,
            apis=load_history,
        )
    view.render(
        args.format,
        judged.facts,
        findings,
        judged.notices,
        error_given=error is not None,
        ruled_out=ruled_out,
    )
    return 1 if any(f.severity == "error" for f in findings) else 0


def plan(args: argparse.Namespace) -> int:
    from compatsolve.fileio import write_atomic
    from compatsolve.outputs import plan as view
    from compatsolve.plan import PlanRequest, make_plan
    from compatsolve.snapshot import load_snapshot

    if not args.model:
        raise InputError("plan needs --model (a catalog name or Hugging Face repo id)")
    if not args.stage:
        raise InputError("plan needs --stage inference or --stage fine-tuning")
    if args.stage == "fine-tuning" and args.engine not in (None, "transformers"):
        raise InputError("--engine applies to inference; fine-tuning plans use transformers")
    if args.output is None and args.format in ("pylock", "requirements", "constraints"):
        raise InputError(f"--format {args.format} needs -o FILE")
    kb = load()
    envs = build_environments(_request(args, strict_model=True), kb)
    card = envs[0].model_card or kb.model(args.model)
    assert card is not None  # build_environments already rejected unknown models
    snapshot = load_snapshot()
    if snapshot is None:
        raise InputError("no PyPI snapshot: run `compatsolve kb refresh`")
    request = PlanRequest(
        model=card,
        stage=args.stage,
        engine=args.engine,
        method=args.method,
        quantization=args.quantization,
        dtype=args.dtype,
        context=args.context,
        python=args.plan_python,
        prefer=args.prefer,
        keep=tuple(args.keep),
    )
    result = make_plan(request, envs, kb, snapshot)
    if args.output:
        text = _plan_file(result, args.format, envs)
        write_atomic(args.output, text, force=args.force)
    if args.format == "json" and not args.output:
        from compatsolve.outputs.console import print_json

        print_json(result.to_json())
    else:
        view.render_table(result, args.explain)
        if args.output:
            print(f"wrote {args.output} ({args.format})")
    return 0 if result.feasible else 1


def _plan_file(result: object, fmt: str, envs: list[Environment]) -> str:
    from compatsolve.outputs import plan as view
    from compatsolve.plan import Plan

    assert isinstance(result, Plan)
    if fmt == "json" or fmt == "table":
        return json.dumps(result.to_json(), indent=2) + "\n"
    if not result.feasible:
        raise InputError("no feasible plan to write (see the explanation above; exit 1)")
    if fmt == "requirements":
        return view.requirements(result)
    if fmt == "constraints":
        return view.requirements(result, constraints=True)
    profile = result.machines[0] if len(result.machines) == 1 else {"fleet": result.machines}
    return view.pylock(result, profile)
