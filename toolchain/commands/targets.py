"""`ntc-export targets`: the target profile table."""

import json

import click


@click.command("targets")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
def command(as_json):
    """List deployment targets: SM, backend, TensorRT range, precisions, attention lowering, memory budget."""
    from rich.console import Console
    from rich.table import Table

    from ..backend.trt.targets import DEFAULT_TARGETS, TARGETS

    if as_json:
        click.echo(json.dumps([dict(t.to_dict(), default=t.name in DEFAULT_TARGETS) for t in TARGETS.values()],
                              indent=2))
        return
    table = Table(title="ntc-export targets (* = built by default)")
    table.add_column("target", no_wrap=True)
    for column in ("SM", "backend", "TensorRT", "precisions", "attention", "memory", "description"):
        table.add_column(column)
    for t in TARGETS.values():
        table.add_row(t.name + (" *" if t.name in DEFAULT_TARGETS else ""), t.sm_name, t.backend, t.trt_range,
                      " ".join(t.precisions), t.attention, f"{t.memory_budget_gib:g} GiB", t.description)
    console = Console()
    # Piped output has no terminal width; keep the rows on one line there.
    (console if console.is_terminal else Console(width=160)).print(table)
