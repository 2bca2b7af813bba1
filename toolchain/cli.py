"""`ntc-export`: thin click CLI over the Python API. `ntc-export MODEL.pt ...` (no subcommand) runs the main job."""

import importlib
import pkgutil
import sys

import click

from . import __version__
from .util.errors import NtcError


class _MainJobGroup(click.Group):
    """A group whose unknown first argument (a model path) routes to the `run` subcommand."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_MainJobGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ntc-export")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx, debug):
    """Export visual-token compressors and VLM projectors to validated ONNX and TensorRT engines.

    \b
    ntc-export MODEL.pt [--data T.npz] [--precision P ...] [--target T ...] [--out DIR]
        runs the main job: tokens -> export -> validate -> report (same as `ntc-export run`).
    ntc-export demo
        runs the main job on every model of the built-in zoo.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _add_commands() -> None:
    from . import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        mod = importlib.import_module(f"{commands.__name__}.{info.name}")
        cmd = getattr(mod, "command", None)
        if isinstance(cmd, click.Command):
            cli.add_command(cmd)


_add_commands()


def main(argv=None) -> int:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        rc = cli.main(args=argv, prog_name="ntc-export", standalone_mode=False)
        if isinstance(rc, int) and not isinstance(rc, bool):  # click returns (not raises) an Exit's code here
            return rc
    except NtcError as e:
        if debug:
            raise
        click.echo(f"error: {e}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())


def entry() -> None:
    """Console-script entry point: exit with main()'s status."""
    sys.exit(main())
