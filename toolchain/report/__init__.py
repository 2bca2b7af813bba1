"""The validation report: renders the main job's report dict as HTML, Markdown and JSON (reads no artifact itself;
the build directory's token-reduction table, when present, is part of the report)."""

from .latency_flags import no_faster_than_fp16
from .writer import write_report

__all__ = ["no_faster_than_fp16", "write_report"]
