"""`ntc-export rd` for token-count reducers and projectors: the token-reduction table (and the adaptive policy)."""

import functools
import tempfile
from pathlib import Path

import click


def reduction_options(f):
    """Options read only when every model is a reducer or a projector."""
    opts = [
        click.option("--task", default="stamps", show_default=True,
                     help="Built-in labelled task for the probe column (train split fits it, val is scored)."),
        click.option("--task-data", type=click.Path(path_type=Path), default=None,
                     help="Labelled held-out token file for the probe column (instead of --task's val split)."),
        click.option("--task-fit", type=click.Path(path_type=Path), default=None,
                     help="Labelled training token file the probe and readouts are fitted on (with --task-data)."),
        click.option("--adaptive", type=float, default=None,
                     help="Also run the adaptive budget policy at this mean tokens per image (threshold fitted on the "
                          "training splits), beside the same budgets fixed and mixed at random to the policy's mean."),
        click.option("--policy-family", type=click.Choice(["tome", "visionzip"]), default="tome",
                     show_default=True, help="The reducer whose fixed budgets the adaptive policy chooses among "
                                             "(tome: budgets among 16, 36, 64, 144 of 256, and 256)."),
        click.option("--budgets", default="16,36,64,144,256", show_default=True,
                     help="Comma-separated budgets of the adaptive policy (the grid's token count = all tokens)."),
        click.option("--policy-fit", type=click.Path(path_type=Path), default=None,
                     help="Token file with the ViT's attention the policy's threshold for --data is fitted on "
                          "(default: the photo corpus's train split with its attention taps, computed and cached on "
                          "first use; then also the --fit default)."),
    ]
    return functools.reduce(lambda g, opt: opt(g), reversed(opts), f)


def _budgets(text: str) -> list[int]:
    from ..util.errors import NtcError

    try:
        return [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise NtcError(f"--budgets takes comma-separated token counts, got {text!r}") from None


def reduction_command(modules, data, fit_data, out, plot, task, task_data, task_fit, adaptive, policy_family, budgets,
                      policy_fit):
    """Measure reducers/projectors (and the adaptive policy) on held-out data; write JSON, print markdown."""
    from ..data.tokens import builtin_tokens, load_data, load_tokens
    from ..evaluate.token_reduction import Suite, kind_of, token_reduction
    from ..report.token_reduction import markdown_table, token_reduction_plot
    from ..util.atomic import write_bytes, write_json
    from ..util.errors import NtcError

    for name, module in modules.items():
        kind_of(module)
    if (task_data is None) != (task_fit is None):
        raise NtcError("--task-data and --task-fit go together (held-out and training labelled token files)")
    tokens, source = load_data(data, "val", attention=True)

    def builtin(name, split, attention=False):  # computed (with progress) and cached on first use
        return builtin_tokens(name, 224, split=split, progress=True, attention=attention)

    pol = None
    if adaptive is not None:
        pol = load_tokens(policy_fit) if policy_fit else builtin("photos", "train", attention=True)
    if fit_data:
        fit = load_tokens(fit_data)
    else:  # the policy's default training set is the same split, with attention taps
        fit = pol if adaptive is not None and not policy_fit else builtin("photos", "train")
    if task_data is not None:
        task_val, task_train = load_tokens(task_data), load_tokens(task_fit)
    else:
        task_val, task_train = (builtin(task, s, attention=True) for s in ("val", "train"))
    suite = Suite(tokens, fit, task_val, task_train, pol)

    def log(text):
        click.echo(f"rd: {text}", err=True)

    rows = token_reduction(modules, suite, log=log)
    if adaptive is not None:
        from ..evaluate.adaptive_budget import adaptive_rows

        keys_dim = 0 if tokens.keys is None else tokens.keys.shape[-1]  # VisionZip's metric: keys where present
        with tempfile.TemporaryDirectory() as tmp:
            rows += adaptive_rows(suite, _budgets(budgets), adaptive, Path(tmp), keys_dim, policy_family, log)
    write_json(out, {"data": source, "fit_data": str(fit_data) if fit_data else "builtin:photos/train@224",
                     "task": str(task_data) if task_data else f"builtin:{task}/val@224",
                     "task_fit": str(task_fit) if task_fit else f"builtin:{task}/train@224",
                     "samples": len(tokens), "task_samples": len(task_val), "rows": rows})
    click.echo(markdown_table(rows))
    if plot is not None:
        write_bytes(plot, token_reduction_plot(rows)[0])
    click.echo(f"wrote {out}" + (f" and {plot}" if plot else ""))
