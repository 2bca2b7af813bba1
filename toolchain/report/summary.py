"""The main job's summary file OUT/report.json: the report dict every report file is rendered from (validation
records, engines, stages, provenance). OUT/report.md is the rendered report's Markdown (see writer.py)."""

from pathlib import Path

from ..util.atomic import write_json


def write_reports(out_dir: Path, report: dict) -> None:
    write_json(out_dir / "report.json", report)
