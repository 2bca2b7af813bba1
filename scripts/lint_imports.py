"""Check the package's layer contracts (pyproject.toml [tool.importlinter]) with import-linter.

    python scripts/lint_imports.py            # exit 0 when every contract is kept

The package maps three folders into `ntc_export` (toolchain/, models/, calibration/, plus plugins/ as data); the
import graph is built from one folder per package, so this stages `ntc_export/` as links to those folders in a
temporary directory and runs `lint-imports` against it.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAPPED = {"models": "models", "calibration": "calibration", "plugins": "plugins"}  # ntc_export.<key> -> folder


def stage(dest: Path, repo: Path = REPO) -> Path:
    """`dest/ntc_export` laid out as the installed package, made of links into `repo`; returns `dest`."""
    pkg = dest / "ntc_export"
    pkg.mkdir(parents=True)
    for entry in (repo / "toolchain").iterdir():
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)
    for name, folder in MAPPED.items():
        (pkg / name).symlink_to(repo / folder)
    return dest


def lint(staged: Path, repo: Path = REPO) -> subprocess.CompletedProcess:
    """Run lint-imports with the staged package first on the path; the contracts come from repo/pyproject.toml."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(staged), os.environ.get("PYTHONPATH", "")])}
    entry = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    cmd = [sys.executable, "-c", entry, "--config", str(repo / "pyproject.toml"), "--no-cache"]
    try:
        return subprocess.run(cmd, cwd=staged, env=env, capture_output=True, text=True, timeout=300)
    except FileNotFoundError:
        raise SystemExit("import-linter is not installed: pip install import-linter") from None


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="ntc-lint-") as tmp:
        result = lint(stage(Path(tmp)))
    print(result.stdout + result.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
