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


NEAR = 2  # a checkpoint at most this many folders above the build directory is named relative to it


def portable_checkpoint(path, build_dir) -> str | None:
    """A checkpoint relative to the build directory when inside it or in a folder just above it ("../model.pt"),
    else its name (the zoo's checkpoints, files elsewhere: found again by name and sha256)."""
    if path is None or not os.path.isabs(str(path)):
        return path
    rel = Path(os.path.relpath(os.path.realpath(str(path)), os.path.realpath(str(build_dir))))
    ups = rel.parts.count("..")
    if ups <= NEAR and len(rel.parts) == ups + 1 or ups == 0:  # in the build directory, or beside one above it
        return rel.as_posix()
    return Path(str(path)).name


def portable_report(report: dict, build_dir) -> dict:
    """The main job's report dict with no machine path: files inside the build directory relative to it, checkpoints
    as portable_checkpoint names them, other files outside (a token file elsewhere) by name (their sha256 sits
    beside them), the command portable."""
    out = strip_build_dir(report, build_dir)
    out["models"] = {n: {**m, "path": portable_checkpoint(m.get("path"), build_dir)}
                     for n, m in (report.get("models") or {}).items()}
    if isinstance(report.get("data"), dict):
        out["data"] = {**out["data"], "source": portable_source(report["data"].get("source"), build_dir)}
    if isinstance(report.get("calibration_data"), dict):
        out["calibration_data"] = {**out["calibration_data"],
                                   "source": portable_source(report["calibration_data"].get("source"), build_dir)}
    out["command"] = portable_command(report.get("command"), build_dir)
    return out
