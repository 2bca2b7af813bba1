"""CLI subcommands: every module here exposing `command` (a click.Command) is added to `ntc-export`."""
