"""`ntc-export targets`: the target profile table."""

import json

import click


@click.command("targets")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
def command(as_json):
    """List deployment targets: SM, backend, TensorRT range, precisions, attention lowering, memory budget."""
    from rich.console import Console
    from rich.table import Table

    from ..targets import DEFAULT_TARGETS, TARGETS

    if as_json:
        click.echo(json.dumps([dict(t.to_dict(), default=t.name in DEFAULT_TARGETS) for t in TARGETS.values()],
                              indent=2))
        return
    table = Table(title="ntc-export targets (* = built by default)")
    for column in ("target", "SM", "backend", "TensorRT", "precisions", "attention", "memory"):
        table.add_column(column, no_wrap=True)
    table.add_column("description")
    for t in TARGETS.values():
        table.add_row(t.name + (" *" if t.name in DEFAULT_TARGETS else ""), t.sm_name, t.backend, t.trt_range,
                      " ".join(t.precisions), t.attention, f"{t.memory_budget_gib:g} GiB", t.description)
    Console().print(table)
