"""User-facing errors: the CLI prints these as one line and exits 2 (no traceback unless --debug)."""


class NtcError(Exception):
    """An input or environment problem the user can fix; the message names it."""
