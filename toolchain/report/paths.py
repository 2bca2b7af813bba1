"""Portable paths: the report names files relative to its build directory, so it reads the same on any machine."""

import os
import shlex
from pathlib import Path, PurePosixPath


def portable(path, build_dir) -> str | None:
    """`path` relative to `build_dir` when inside it, else its file name (the report shows its sha256 beside it)."""
    if path is None:
        return None
    text = str(path)
    if not os.path.isabs(text):
        return text
    root = os.path.realpath(str(build_dir))
    full = os.path.realpath(text)
    if full == root:
        return "."
    if full.startswith(root.rstrip(os.sep) + os.sep):
        return PurePosixPath(*Path(os.path.relpath(full, root)).parts).as_posix()
    return Path(full).name


def portable_source(source, build_dir) -> str | None:
    """A data source: built-in names ("builtin:photos/val@224[:128]") stay, file paths become portable."""
    if source is None or ":" in str(source).split("/")[0]:
        return source
    return portable(source, build_dir)


def portable_command(command: str | None, build_dir) -> str | None:
    """The command line with every absolute path argument made portable (options joined by "=" included)."""
    if not command:
        return command
    try:
        words = shlex.split(command)
    except ValueError:  # unbalanced quotes: leave the words as they are
        words = command.split()
    out = []
    for word in words:
        flag, eq, value = word.partition("=")
        if eq and flag.startswith("-") and os.path.isabs(value):
            out.append(f"{flag}={portable(value, build_dir)}")
        else:
            out.append(portable(word, build_dir) if os.path.isabs(word) else word)
    return " ".join(shlex.quote(w) for w in out)


def strip_build_dir(value, build_dir):
    """Every string in a JSON-like value with the build directory's absolute prefix removed (fields this module
    does not know by name: they must not carry the machine's paths either)."""
    if isinstance(value, str):
        for root in {os.path.abspath(str(build_dir)), os.path.realpath(str(build_dir))}:
            value = value.replace(root.rstrip(os.sep) + os.sep, "")
        return value
    if isinstance(value, dict):
        return {k: strip_build_dir(v, build_dir) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_build_dir(v, build_dir) for v in value]
    return value
