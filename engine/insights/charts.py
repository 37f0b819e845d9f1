"""The visual report: one self-contained HTML page with inline SVG (no scripts, no network).

- a Gantt chart of a run: one bar per job from its first start to its last finish, its
  attempts drawn inside (failed attempts hatched red, so retries show), its wait for a
  worker as a thin line before it, failed jobs red, skipped jobs grey, and the critical
  path outlined in amber;
- the duration trend of recent runs, coloured by outcome, with its least-squares line;
- the health table of the pipeline (or of every pipeline);
- the run's jobs as a table.

The SVG builders are pure functions of plain data; `render_report` reads the store.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from dataclasses import dataclass

from engine.errors import NotFoundError
from engine.insights import _queries
from engine.insights._advice import critical_path_of
from engine.insights._health import run_report
from engine.insights._queries import RecentRun
from engine.insights._stats import fit_line, sums_of
from engine.insights.models import HealthReport, RunReport
from engine.insights.monitor import PipelineMonitor
from engine.store import Store
from engine.store import insights as insights_repo

__all__ = ["TrendPoint", "gantt_svg", "health_table", "render_report", "trend_svg"]

TREND_RUNS = 30
_COLOURS = {
    "succeeded": "#2e7d32",
    "failed": "#c62828",
    "timed_out": "#ad1457",
    "cancelled": "#757575",
    "skipped": "#bdbdbd",
    "running": "#1565c0",
    "retrying": "#ef6c00",
    "pending": "#e0e0e0",
    "interrupted": "#6a1b9a",
    "queued": "#e0e0e0",
}
_HEALTH_COLOURS = {"healthy": "#2e7d32", "degraded": "#ef6c00", "failing": "#c62828", "unknown": "#757575"}
_CRITICAL = "#ff8f00"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _fmt_s(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 60:
        return f"{value:.2f} s"
    return f"{int(value // 60)} min {value % 60:.0f} s"


def _ticks(span: float, count: int = 6) -> list[float]:
    if span <= 0:
        return [0.0]
    raw = span / count
    magnitude = 10 ** len(str(int(raw))) / 10 if raw >= 1 else 0.1
    for m in (0.1, 0.2, 0.5, 1, 2, 5, 10):
        step = m * magnitude if raw >= 1 else m
        if step >= raw:
            break
    n = int(span / step) + 1
    return [i * step for i in range(n + 1) if i * step <= span * 1.0001]


def gantt_svg(run: RecentRun, critical: Sequence[str] = ()) -> str:
    """A Gantt chart of the run: one `rect.job-bar` per job (data-job holds its name)."""
    jobs = list(run.jobs.values())
    origin_candidates = [t for j in jobs for t in (j.ready_at, j.started_at) if t is not None]
    origin = min([run.started_at or run.created_at, *origin_candidates])
    end = max(
        [
            origin + 0.001,
            *(j.finished_at for j in jobs if j.finished_at is not None),
            *(run.finished_at for _ in [0] if run.finished_at is not None),
        ]
    )
    span = end - origin
    label_w, plot_w, row_h, top = 200, 720, 28, 34
    height = top + row_h * max(1, len(jobs)) + 40
    width = label_w + plot_w + 90

    def x(t: float) -> float:
        return label_w + (t - origin) / span * plot_w

    crit = set(critical)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="gantt" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="Gantt chart of run {_e(run.run_id)}">',
        '<defs><pattern id="retry-hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#ffcdd2"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#c62828" stroke-width="3"/></pattern></defs>',
        f'<text x="{label_w}" y="16" font-size="12" fill="#444">seconds since the run started '
        f"(amber outline: critical path; hatched: failed attempts that were retried)</text>",
    ]
    for t in _ticks(span):
        xx = x(origin + t)
        out.append(f'<line x1="{xx:.1f}" y1="{top - 6}" x2="{xx:.1f}" y2="{height - 30}" stroke="#eee"/>')
        out.append(
            f'<text x="{xx:.1f}" y="{height - 14}" font-size="11" text-anchor="middle" '
            f'fill="#555">{t:g}</text>'
        )
    for i, j in enumerate(jobs):
        y = top + i * row_h
        on_path = j.name in crit
        weight = "bold" if on_path else "normal"
        out.append(
            f'<text x="{label_w - 8}" y="{y + 18}" font-size="12" text-anchor="end" '
            f'font-weight="{weight}" fill="#222">{_e(j.name)}</text>'
        )
        colour = _COLOURS.get(j.status, "#90a4ae")
        tip = (
            f"{j.name}: {j.status}, {_fmt_s(j.wall)}, {j.attempts} attempt(s)"
            + (f", waited {_fmt_s(j.queue_wait)} for a worker" if j.queue_wait else "")
            + (f" — {j.reason}" if j.reason else "")
            + (" — on the critical path" if on_path else "")
        )
        if j.started_at is None:
            # Never ran (skipped or cancelled before starting): a short grey marker at its row.
            out.append(
                f'<rect class="job-bar status-{_e(j.status)}" data-job="{_e(j.name)}" x="{label_w}" '
                f'y="{y + 6}" width="6" height="{row_h - 12}" fill="{colour}"><title>{_e(tip)}</title></rect>'
            )
            out.append(
                f'<text x="{label_w + 12}" y="{y + 18}" font-size="11" fill="#757575">{_e(j.status)}</text>'
            )
            continue
        if j.ready_at is not None and j.queue_wait and j.queue_wait > 0:
            out.append(
                f'<line class="queue" x1="{x(j.ready_at):.1f}" y1="{y + row_h / 2}" '
                f'x2="{x(j.started_at):.1f}" y2="{y + row_h / 2}" stroke="#9e9e9e" stroke-width="2" '
                f'stroke-dasharray="3,2"/>'
            )
        finish = j.finished_at if j.finished_at is not None else end
        bx, bw = x(j.started_at), max(2.0, x(finish) - x(j.started_at))
        stroke = f' stroke="{_CRITICAL}" stroke-width="3"' if on_path else ""
        out.append(
            f'<rect class="job-bar status-{_e(j.status)}{" critical" if on_path else ""}" '
            f'data-job="{_e(j.name)}" x="{bx:.1f}" y="{y + 5}" width="{bw:.1f}" height="{row_h - 10}" '
            f'rx="3" fill="{colour}" fill-opacity="0.85"{stroke}><title>{_e(tip)}</title></rect>'
        )
        if len(j.attempt_spans) > 1:
            for number, status, a_start, a_end in j.attempt_spans:
                if a_end is None or status == "succeeded":
                    continue
                ax, aw = x(a_start), max(2.0, x(a_end) - x(a_start))
                out.append(
                    f'<rect class="attempt attempt-{_e(status)}" x="{ax:.1f}" y="{y + 8}" width="{aw:.1f}" '
                    f'height="{row_h - 16}" fill="url(#retry-hatch)"><title>{_e(j.name)} attempt {number}: '
                    f"{_e(status)}, {_fmt_s(a_end - a_start)}</title></rect>"
                )
        label = _fmt_s(j.wall) + (f" ×{j.attempts}" if j.attempts > 1 else "")
        out.append(f'<text x="{bx + bw + 4:.1f}" y="{y + 18}" font-size="11" fill="#333">{_e(label)}</text>')
    out.append("</svg>")
    return "".join(out)


@dataclass(frozen=True)
class TrendPoint:
    run_id: str
    created_at: float
    duration: float  # seconds
    status: str


def trend_svg(points: Sequence[TrendPoint]) -> str:
    """Durations of recent runs (oldest left), coloured by outcome, with the fitted line of succeeded runs."""
    width, height, left, right, top, bottom = 960, 260, 60, 20, 20, 40
    if not points:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="trend" width="{width}" height="60">'
            '<text x="10" y="30" font-size="13" fill="#555">no finished runs to plot</text></svg>'
        )
    hi = max(p.duration for p in points) * 1.1 or 1.0
    n = len(points)

    def x(i: float) -> float:
        return (
            left + (i / max(1, n - 1)) * (width - left - right)
            if n > 1
            else left + (width - left - right) / 2
        )

    def y(v: float) -> float:
        return top + (1 - v / hi) * (height - top - bottom)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="trend" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="Run duration trend">'
    ]
    for t in _ticks(hi, 4):
        out.append(f'<line x1="{left}" y1="{y(t):.1f}" x2="{width - right}" y2="{y(t):.1f}" stroke="#eee"/>')
        out.append(
            f'<text x="{left - 6}" y="{y(t) + 4:.1f}" font-size="11" text-anchor="end" '
            f'fill="#555">{t:g} s</text>'
        )
    ok = [(i, p) for i, p in enumerate(points) if p.status == "succeeded"]
    if len(ok) > 1:
        out.append(
            '<polyline fill="none" stroke="#90caf9" stroke-width="2" points="'
            + " ".join(f"{x(i):.1f},{y(p.duration):.1f}" for i, p in ok)
            + '"/>'
        )
        fit = fit_line(sums_of([(float(i), p.duration) for i, p in ok]), float(ok[-1][0] - ok[0][0]))
        if fit is not None:
            x0, x1 = ok[0][0], ok[-1][0]
            out.append(
                f'<line class="fit" x1="{x(x0):.1f}" y1="{y(fit.intercept + fit.slope * x0):.1f}" '
                f'x2="{x(x1):.1f}" y2="{y(fit.intercept + fit.slope * x1):.1f}" stroke="#1565c0" '
                f'stroke-width="1.5" stroke-dasharray="6,4"/>'
            )
    for i, p in enumerate(points):
        colour = _COLOURS.get(p.status, "#90a4ae")
        out.append(
            f'<circle class="run-point" cx="{x(i):.1f}" cy="{y(p.duration):.1f}" r="5" fill="{colour}">'
            f"<title>{_e(p.run_id)}: {_e(p.status)}, {_fmt_s(p.duration)}</title></circle>"
        )
    out.append(
        f'<text x="{left}" y="{height - 10}" font-size="11" fill="#555">oldest → newest of the last {n} '
        f"finished run(s); dashed: least-squares line of succeeded runs</text>"
    )
    out.append("</svg>")
    return "".join(out)


def health_table(report: HealthReport) -> str:
    rows = []
    for h in report.pipelines:
        colour = _HEALTH_COLOURS[h.status]
        rate = "–" if h.success_rate is None else f"{h.success_rate:.0%}"
        last = "–" if h.last_run is None else f"{_e(h.last_run.status)} ({_e(h.last_run.run_id)})"
        mttr = _fmt_s(h.mean_time_to_recovery.value if h.mean_time_to_recovery else None)
        flaky = ", ".join(f.job for f in h.flaky_jobs) or "–"
        trend = "–" if h.duration_trend is None else h.duration_trend.verdict.replace("_", " ")
        rows.append(
            f'<tr><td>{_e(h.pipeline)}</td>'
            f'<td><span class="badge" style="background:{colour}">{h.status}</span>'
            f'<div class="why">{_e("; ".join(h.reasons))}</div></td><td>{rate}</td><td>{h.runs}</td>'
            f"<td>{last}</td><td>{h.failure_streak}</td><td>{mttr}</td><td>{_e(flaky)}</td><td>{_e(trend)}</td></tr>"
        )
    if not rows:
        rows.append('<tr><td colspan="9">no pipelines recorded</td></tr>')
    return (
        '<table class="health"><thead><tr><th>pipeline</th><th>status</th><th>success rate</th><th>runs</th>'
        "<th>last run</th><th>failure streak</th><th>mean time to recovery</th><th>flaky jobs</th>"
        "<th>duration trend</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _jobs_table(report: RunReport) -> str:
    rows = [
        f'<tr><td>{_e(j.name)}</td><td>{_e(j.stage)}</td><td class="st-{_e(j.status)}">{_e(j.status)}</td>'
        f"<td>{j.attempts}</td><td>{_fmt_s(j.duration.value if j.duration else None)}</td>"
        f"<td>{_fmt_s(j.queue_wait.value if j.queue_wait else None)}</td>"
        f"<td>{_fmt_s(j.cpu.value if j.cpu else None)}</td>"
        f"<td>{'–' if j.peak_memory is None else f'{j.peak_memory.value:.1f} MB'}</td>"
        f"<td>{_e(', '.join(j.artifacts) or '–')}</td><td>{_e(j.reason or '')}</td></tr>"
        for j in report.jobs
    ]
    return (
        "<table><thead><tr><th>job</th><th>stage</th><th>status</th><th>attempts</th><th>duration</th>"
        "<th>queue wait</th><th>CPU</th><th>peak memory</th><th>artifacts</th><th>reason</th></tr></thead>"
        "<tbody>" + "".join(rows) + "</tbody></table>"
    )


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#555;font-size:13px}table{border-collapse:collapse;font-size:13px;margin-top:6px}
td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f5f5f5}
.badge{color:#fff;border-radius:4px;padding:1px 8px;font-weight:600}
.why{color:#666;font-size:11px;max-width:360px}
.st-failed,.st-timed_out{color:#c62828;font-weight:600}.st-succeeded{color:#2e7d32}
"""


def render_report(
    store: Store, pipeline: str | None = None, run_id: str | None = None, *, now: float | None = None
) -> str:
    """The whole report as one HTML string: Gantt of a run, duration trend, health, job table.

    The run is `run_id`, else the newest run of `pipeline`, else the newest run of all.

    Raises:
        NotFoundError: no run with that id (or it belongs to another pipeline).
    """
    now = time.time() if now is None else now
    run: RecentRun | None = None
    if run_id is not None:
        row = insights_repo.run(store, run_id)
        if row is None or (pipeline is not None and row["pipeline"] != pipeline):
            raise NotFoundError(f"no run {run_id!r}" + (f" of pipeline {pipeline}" if pipeline else ""))
        run = _queries.load_run(store, row)
    else:
        rows = _queries.run_rows(store, pipeline, limit=1)
        run = _queries.load_run(store, rows[0]) if rows else None
    if pipeline is None and run is not None:
        pipeline = run.pipeline
    monitor = PipelineMonitor(store=store, clock=lambda: now)
    health = monitor.monitor_pipeline_health(pipeline)
    title = f"Pipeline report: {pipeline}" if pipeline else "Pipeline report"
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<div class="meta">generated {_e(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now)))} '
        "from the runs recorded in the store</div>",
    ]
    if run is None:
        parts.append(
            "<h2>Run</h2><p>no runs recorded" + (f" for {_e(pipeline)}" if pipeline else "") + "</p>"
        )
    else:
        report = run_report(run)
        cp = critical_path_of(run)
        path = [j.job for j in cp.jobs] if cp else []
        parts.append(f"<h2>Run {_e(run.run_id)}: {_e(run.status)}, {_fmt_s(run.duration)}</h2>")
        parts.append(
            f'<div class="meta">{report.jobs_executed} job(s) ran: {report.passed} passed, '
            f"{report.failed} failed, {report.skipped} skipped; {report.artifacts_created} artifact(s)"
            + (f"; critical path {_e(' → '.join(path))} ({_fmt_s(cp.length.value)})" if cp else "")
            + "</div>"
        )
        parts.append(gantt_svg(run, path))
    if pipeline is not None:
        points = [
            TrendPoint(r["run_id"], r["created_at"], r["duration"], r["status"])
            for r in _queries.run_rows(
                store,
                pipeline,
                limit=TREND_RUNS,
                statuses=("succeeded", "failed", "interrupted", "cancelled"),
            )
            if r["duration"] is not None
        ][::-1]
        parts.append("<h2>Duration of recent runs</h2>")
        parts.append(trend_svg(points))
    parts.append("<h2>Health</h2>")
    parts.append(health_table(health))
    if run is not None:
        parts.append("<h2>Jobs</h2>")
        parts.append(_jobs_table(run_report(run)))
    parts.append("</body></html>")
    return "\n".join(parts)
