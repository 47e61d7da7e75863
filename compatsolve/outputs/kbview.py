"""Knowledge-base views: stats, one rule, a rule list."""

from __future__ import annotations

from typing import Any

from compatsolve.knowledge import Rule
from compatsolve.outputs.console import console, print_json


def render_stats(data: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        print_json(data)
        return
    from rich.table import Table

    out = console()
    out.print(
        f"[bold]{data['rules']} rules[/], {data['gpus']} NVIDIA and {data['amd_gpus']} AMD GPUs, "
        f"{data['models']} models, "
        f"{data['cuda_releases']} CUDA releases, {data['torch_releases']} torch releases, "
        f"{data['extensions']} extension entries"
    )
    for title, key in (
        ("kind", "rules_by_kind"),
        ("stage", "rules_by_stage"),
        ("tier", "rules_by_tier"),
        ("severity", "rules_by_severity"),
    ):
        table = Table(title=f"rules by {title}", header_style="bold")
        table.add_column(title)
        table.add_column("rules", justify="right")
        for name, count in data[key].items():
            table.add_row(name, str(count))
        out.print(table)
    corpus = data["corpus"]
    table = Table(
        title=f"study corpus: {corpus['records']} environment-class records, "
        f"{corpus['cited']} cited, {corpus['triaged']} triaged",
        header_style="bold",
    )
    for column in ("category", "records", "cited", "triaged"):
        table.add_column(column, justify="left" if column == "category" else "right")
    for name, row in sorted(corpus["by_category"].items()):
        table.add_row(name, str(row["records"]), str(row["cited"]), str(row["triaged"]))
    out.print(table)
    snap = data.get("snapshot")
    if snap:
        out.print(
            f"PyPI snapshot {snap['date']}: {snap['projects']} projects, "
            f"{snap['releases']} releases; newest: "
            + ", ".join(f"{k} {v}" for k, v in snap["newest"].items())
        )
    else:
        out.print("no PyPI snapshot (run `compatsolve kb refresh`)")


def render_rule(rule: Rule) -> None:
    out = console()
    out.print(f"[bold]{rule.id}[/] — {rule.title}")
    out.print(
        f"kind {rule.kind} · severity {rule.severity} · stages {', '.join(rule.stages)} · "
        f"tier {rule.tier} · components {', '.join(rule.components)} · {rule.file}"
    )
    if rule.when is not None:
        out.print("when: " + ", ".join(sorted(rule.when.facts())))
    for sig in rule.signatures:
        out.print(f"signature: {sig}", markup=False)
    out.print(f"\n{rule.explanation}\n\n[bold]Fix:[/] {rule.fix}")
    for url in rule.evidence:
        out.print(f"evidence: {url}", markup=False)


def render_rule_list(rules: list[Rule]) -> None:
    out = console()
    if not rules:
        out.print("no rule matches")
    for rule in rules:
        out.print(f"{rule.id:<50} {rule.kind:<32} {rule.title}", markup=False)
