"""The main job's summary files: OUT/report.json and OUT/report.md (validation records, stages, provenance)."""

from pathlib import Path

from ..util.atomic import write_json, write_text


def _fmt(value, spec: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and value == float("inf"):
        return "inf"
    return format(value, spec)


def markdown(report: dict) -> str:
    lines = ["# ntc-export report", ""]
    lines += [f"- data: `{report['data']['source']}` ({report['data']['samples']} held-out samples, "
              f"grid {report['data']['grid']}, sha256 `{report['data']['sha256'][:16]}`)",
              f"- verdict: **{'PASS' if report['pass'] else 'FAIL'}**", ""]
    lines += ["## Fidelity against PyTorch", "",
              "| model | precision | target | backend | output | max abs | rel L2 | cosine | SNR dB | task acc "
              "(golden) | threshold | verdict |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["records"]:
        if not r.get("executed", True):
            lines.append(f"| {r['model']} | {r['precision']} | {r['target']} | {r['backend']} | {r.get('output', '—')} "
                         f"| not executed: {r.get('reason', '')} |||||||")
            continue
        acc = f"{_fmt(r['task_metric'], '.4f')} ({_fmt(r.get('task_metric_golden'), '.4f')})"
        lines.append(f"| {r['model']} | {r['precision']} | {r['target']} | {r['backend']} | {r['output']} "
                     f"| {_fmt(r['max_abs'], '.3g')} | {_fmt(r['rel_l2'], '.3g')} | {_fmt(r['cosine'], '.7f')} "
                     f"| {_fmt(r['snr_db'], '.1f')} | {acc} | {r['threshold']} | {'pass' if r['pass'] else 'FAIL'} |")
    lines += ["", "## Stages", "", "| stage | status | seconds |", "|---|---|---|"]
    for s in report["stages"]:
        lines.append(f"| {s['name']} | {s['status']} | {s['seconds']:.2f} |")
    lines += ["", "## Reproduce", "", f"```\n{report['command']}\n```", "",
              "Tool versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v), ""]
    return "\n".join(lines)


def write_reports(out_dir: Path, report: dict) -> None:
    write_json(out_dir / "report.json", report)
    write_text(out_dir / "report.md", markdown(report))
