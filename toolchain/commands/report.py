"""`ntc-export report BUILD_DIR`: regenerate OUT/report/{index.html, report.md, report.json} from a main-job output."""

from pathlib import Path

import click

from .options import quiet_option


@click.command("report")
@click.argument("build_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--measure/--no-measure", default=None,
              help="Measure ONNX Runtime latency, per-layer drift and engine latency on this machine "
                   "[default: only when report.json has no latency yet].")
@click.option("--token-reduction", "reduction", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="The JSON `ntc-export rd` wrote for token-count reducers and projectors: kept as "
                                 "BUILD_DIR/token_reduction.json and shown in this and every later report.")
@click.option("--json", "as_json", is_flag=True, help="Print the report JSON to stdout.")
@quiet_option
def command(build_dir, measure, reduction, as_json, quiet):
    """Write BUILD_DIR/report/ (HTML, Markdown, JSON) from BUILD_DIR/report.json and engines/manifest.json."""
    from ..evaluate import load_build, measure_build
    from ..evaluate.provenance import hashed_files
    from ..report import token_reduction, write_report
    from ..util.atomic import write_json

    report = load_build(build_dir)
    if reduction is not None:  # checked before any work; kept in the build directory for later reports
        write_json(build_dir / token_reduction.FILE, token_reduction.read(reduction))
    if measure or (measure is None and "latency" not in report):
        report = measure_build(build_dir, report)
    else:
        report["hashed_files"] = hashed_files(build_dir, report, report.get("engines", []))
    files = write_report(build_dir, report)
    if as_json:
        click.echo(files["json"].read_text(), nl=False)
    elif not quiet:
        click.echo(f"report: {files['html']}  ({files['markdown'].name}, {files['json'].name})", err=True)
