"""Stages with content-hash keys: the build directory is a cache.

A stage is `fn() -> result` plus a key (everything it depends on) and the files it writes. When the key is unchanged
and every output still has the hash recorded last time, the stage is skipped and says so; otherwise it runs and its
state is written atomically after its outputs exist.
"""

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from rich.console import Console

from ..util.atomic import write_json
from ..util.hashing import sha256_file, sha256_json


@dataclass
class StageRecord:
    name: str
    status: str  # "ran" | "skipped" | "failed"
    seconds: float
    key: str
    outputs: dict[str, str] = field(default_factory=dict)
    note: str = ""


class Pipeline:
    """Runs stages under `out_dir`, keeping their state in `out_dir/.stages/`."""

    def __init__(self, out_dir, console: Console | None = None, quiet: bool = False):
        self.out_dir = Path(out_dir).resolve()  # outputs are recorded relative to it, wherever the job runs from
        self.state_dir = self.out_dir / ".stages"
        self.console = console or Console(stderr=True, quiet=quiet)
        self.records: list[StageRecord] = []

    def _state_path(self, name: str) -> Path:
        return self.state_dir / (name.replace("/", "__") + ".json")

    def _cached(self, name: str, key: str):
        path = self._state_path(name)
        if not path.exists():
            return None
        try:
            state = json.loads(path.read_text())
        except json.JSONDecodeError:
            return None
        if state.get("key") != key:
            return None
        for out, digest in state.get("outputs", {}).items():
            p = self.out_dir / out
            if not p.exists() or sha256_file(p) != digest:
                return None
        return state

    def stage(self, name: str, key: dict, fn: Callable[[], Any], outputs: Callable[[Any], list] | list = ()) -> Any:
        """Run (or skip) stage `name`; `outputs` lists the files it writes (or derives them from the result)."""
        key_hash = sha256_json(key)
        state = self._cached(name, key_hash)
        if state is not None:
            self.records.append(StageRecord(name, "skipped", 0.0, key_hash, state["outputs"], "unchanged inputs"))
            self.console.print(f"[dim]skip[/dim] {name} [dim](cached: inputs unchanged)[/dim]")
            return state.get("result")
        start = time.perf_counter()
        with self.console.status(f"{name} ..."):
            try:
                result = fn()
            except Exception:
                self.records.append(StageRecord(name, "failed", time.perf_counter() - start, key_hash))
                self._state_path(name).unlink(missing_ok=True)
                raise
        seconds = time.perf_counter() - start
        files = outputs(result) if callable(outputs) else outputs
        digests = {}
        for f in files:
            p = Path(f)
            if not p.is_absolute():  # relative to the output dir (what stages return), else to the working dir
                p = self.out_dir / p if (self.out_dir / p).exists() else p.resolve()
            rel = p.relative_to(self.out_dir)
            digests[str(rel)] = sha256_file(self.out_dir / rel)
        write_json(self._state_path(name), {"name": name, "key": key_hash, "outputs": digests, "result": result,
                                            "seconds": seconds})
        self.records.append(StageRecord(name, "ran", seconds, key_hash, digests))
        self.console.print(f"[green]done[/green] {name} [dim]({seconds:.1f} s)[/dim]")
        return result

    def note(self, name: str, cached: bool, seconds: float, detail: str = "") -> None:
        """Record a step that keeps its own cache (engine builds): "skipped" on a cache hit."""
        status = "skipped" if cached else "ran"
        self.records.append(StageRecord(name, status, seconds, "", {}, detail))
        if cached:
            self.console.print(f"[dim]skip[/dim] {name} [dim](cached: {detail})[/dim]")
        else:
            self.console.print(f"[green]done[/green] {name} [dim]({seconds:.1f} s)[/dim]")

    def summary(self) -> list[dict]:
        return [asdict(r) for r in self.records]
