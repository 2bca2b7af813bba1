"""The layer contracts in pyproject.toml hold on the tree, and they bite: an upward import is reported."""

import importlib.util
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytest.importorskip("importlinter", reason="import-linter is part of the test extra")


def _script():
    spec = importlib.util.spec_from_file_location("lint_imports", REPO / "scripts" / "lint_imports.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_contracts_are_kept(tmp_path):
    lint = _script()
    result = lint.lint(lint.stage(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" KEPT") == 3 and "BROKEN" not in result.stdout


def test_upward_import_from_report_is_reported(tmp_path):
    lint = _script()
    staged = lint.stage(tmp_path)
    report = staged / "ntc_export" / "report"
    report.unlink()  # replace the link with a copy that imports the pipeline
    shutil.copytree(REPO / "toolchain" / "report", report, ignore=shutil.ignore_patterns("__pycache__"))
    (report / "injected.py").write_text("from ..pipeline import main_job  # noqa: F401\n")
    result = lint.lint(staged)
    assert result.returncode != 0
    assert "report renders a dict: it imports nothing of ours but util BROKEN" in " ".join(result.stdout.split())
    assert "ntc_export.report.injected -> ntc_export.pipeline.main_job" in result.stdout


def test_downward_layer_violation_is_reported(tmp_path):
    lint = _script()
    staged = lint.stage(tmp_path)
    util = staged / "ntc_export" / "util"
    util.unlink()
    shutil.copytree(REPO / "toolchain" / "util", util, ignore=shutil.ignore_patterns("__pycache__"))
    (util / "injected.py").write_text("from ..backend.onnx import export  # noqa: F401\n")
    result = lint.lint(staged)
    assert result.returncode != 0 and "ntc_export.util.injected -> ntc_export.backend.onnx.export" in result.stdout
