"""The main job's summary file OUT/report.json: the report dict every report file is rendered from (validation
records, engines, stages, provenance), with no machine path in it (paths.portable_report). OUT/report.md is the
rendered report's Markdown (see writer.py)."""

from pathlib import Path

from ..util.atomic import write_json
from .paths import portable_report


def write_reports(out_dir: Path, report: dict) -> None:
    write_json(out_dir / "report.json", portable_report(report, out_dir))
