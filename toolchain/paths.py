"""Where things live: repository folders (plugins sources, zoo) and the per-user cache."""

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
PLUGINS_DIR = REPO_ROOT / "plugins"
ZOO_DIR = REPO_ROOT / "models" / "zoo"


def cache_dir(*parts: str) -> Path:
    """Per-user cache (override with NTC_EXPORT_CACHE); created on demand."""
    root = Path(os.environ.get("NTC_EXPORT_CACHE", Path.home() / ".cache" / "ntc-export"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
