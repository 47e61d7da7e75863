"""Findings as a table, JSON (the `compatsolve.findings/1` contract) or Markdown for an issue."""

from __future__ import annotations

from typing import Any

from compatsolve.findings import Finding, document
from compatsolve.outputs.console import console, print_json

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def render(
    fmt: str,
    facts: dict[str, Any],
    findings: list[Finding],
    notices: list[dict[str, str]],
    *,
    error_given: bool,
    ruled_out: list[str] | None = None,
) -> None:
    if fmt == "json":
        print_json(document(facts, findings, notices))
    elif fmt == "markdown":
        print(markdown(facts, findings, notices, error_given=error_given, ruled_out=ruled_out or []))
    else:
        _table(facts, findings, notices, error_given=error_given, ruled_out=ruled_out or [])


def _table(
    facts: dict[str, Any],
    findings: list[Finding],
    notices: list[dict[str, str]],
    *,
    error_given: bool,
    ruled_out: list[str],
) -> None:
    from rich.markup import escape
    from rich.panel import Panel

    out = console()
    shown = ", ".join(
        f"{k}={v}"
        for k, v in facts.items()
        if k.split(".")[0] in ("gpu", "driver", "toolkit", "torch", "os", "python") and not k.startswith("_")
    )
    out.print(f"[dim]judged: {shown or 'no machine facts'}[/]")
    if not findings:
        out.print(
            "[green]No known problem found.[/] "
            + (
                "No rule and no failure family recognises this message: paste the full error line "
                "(or --log the whole output) and give the machine and packages (--target, --report, "
                "--with) so the facts can be judged."
                if error_given
                else "Unknown facts are not judged compatible: see `compatsolve probe` for what is known."
            )
        )
    for i, f in enumerate(findings, 1):
        style = SEVERITY_STYLE[f.severity]
        badge = ""
        if error_given:
            badge = (
                " [bold]explains the error[/]" if f.explains_error else " [dim](does not match the error)[/]"
            )
        # The title and the finding's identity go in the body, which wraps: a panel's border line
        # cuts long text at the terminal width.
        body = f"[bold]{escape(f.title)}[/]\n{escape(f.explanation)}\n\n[bold]Fix:[/] {escape(f.fix)}"
        if f.evidence:
            body += (
                "\n[dim]Evidence: " + " ".join(f.evidence[:4]) + (" …" if len(f.evidence) > 4 else "") + "[/]"
            )
        body += (
            f"\n[dim]{f.rule} · {f.kind} · {', '.join(f.components) or 'no component named'}"
            f" · confidence {f.confidence:.2f}[/]"
        )
        title = f"[{style}]{i}. {f.severity.upper()}[/]{badge}"
        out.print(Panel(body, title=title, title_align="left"))
    if ruled_out:
        out.print(f"[dim]Ruled out by the facts: {', '.join(ruled_out)}[/]")
    for n in notices:
        if n["severity"] != "info" or n["message"].startswith("recognised"):
            out.print(f"[dim]{n['severity']}: {n['message']} ({n['source']})[/]")


def markdown(
    facts: dict[str, Any],
    findings: list[Finding],
    notices: list[dict[str, str]],
    *,
    error_given: bool,
    ruled_out: list[str],
) -> str:
    """Ready to paste into a GitHub issue: a summary line, each finding, the facts used."""
    errors = sum(f.severity == "error" for f in findings)
    lines = ["### compatsolve report", ""]
    if not findings:
        lines.append(
            "No known problem found."
            + (" No rule and no failure family recognises the error message." if error_given else "")
        )
    else:
        lines.append(
            f"{len(findings)} finding(s), {errors} error(s)."
            + (" The likeliest cause of the error comes first." if error_given else "")
        )
    for i, f in enumerate(findings, 1):
        lines += ["", f"#### {i}. {f.severity}: {f.title}", ""]
        meta = f"`{f.rule}` · kind `{f.kind}` · components {', '.join(f'`{c}`' for c in f.components) or '—'}"
        meta += f" · confidence {f.confidence:.2f}"
        if error_given:
            meta += " · **explains the error**" if f.explains_error else " · does not match the error"
        lines += [meta, "", f.explanation, "", f"**Fix:** {f.fix}"]
        if f.evidence:
            lines += ["", "Evidence: " + ", ".join(f"<{u}>" for u in f.evidence)]
    if ruled_out:
        lines += ["", "Ruled out by the facts: " + ", ".join(f"`{r}`" for r in ruled_out)]
    lines += ["", "<details><summary>Facts used</summary>", "", "| fact | value |", "|---|---|"]
    lines += [f"| `{k}` | {_cell(v)} |" for k, v in facts.items()]
    lines += ["", "</details>"]
    warn = [n for n in notices if n["severity"] != "info"]
    if warn:
        lines += ["", "Notes: " + "; ".join(n["message"] for n in warn)]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")
