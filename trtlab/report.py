"""Session.report(): one self-contained HTML file (plotly's JavaScript inlined once) readable with no kernel or network."""
from __future__ import annotations

import datetime as dt
import json
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import pandas as pd

from .hooks import register
from .markup import esc, plot_text

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from .session import Session

MAX_PER_SECTION = 8  # newest results charted per kind; older ones are listed in the tables only
_CSS = """
body{font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1200px;color:#222}
h1{margin-bottom:0} h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
table.trtlab{border-collapse:collapse;font-size:13px;margin:8px 0} table.trtlab td,table.trtlab th{border:1px solid
#ddd;padding:3px 8px;text-align:left} table.trtlab th{background:#f4f4f4} pre{background:#f7f7f7;padding:8px;
overflow:auto;font-size:12px} .muted{color:#777} .warning{color:#a33} .chart{margin:8px 0 24px 0} nav a{margin-right:12px}
"""


class ReportBuilder:
    """Collects sections of HTML and figures; `html()` joins them into one page."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.sections: list[tuple[str, str, list[str]]] = []
        self.figures = 0

    def section(self, anchor: str, heading: str) -> list[str]:
        """Start a section; returns its list of HTML parts to append to."""
        parts: list[str] = []
        self.sections.append((anchor, heading, parts))
        return parts

    def figure(self, fig: "go.Figure") -> str:
        """A figure as a <div> (plotly.js is included once, in the page head)."""
        import plotly.io as pio
        self.figures += 1
        return ('<div class="chart">' + pio.to_html(fig, include_plotlyjs=False, full_html=False,
                                                    config={"displaylogo": False, "responsive": True})
                + "</div>")

    def html(self) -> str:
        """The whole page."""
        from plotly.offline import get_plotlyjs
        nav = " ".join(f'<a href="#{a}">{esc(h)}</a>' for a, h, _ in self.sections)
        body = "".join(f'<h2 id="{a}">{esc(h)}</h2>' + "".join(p) for a, h, p in self.sections)
        stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(self.title)}</title>"
                f"<style>{_CSS}</style><script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
                f"<h1>{esc(self.title)}</h1><p class='muted'>written by trtlab on {stamp}</p>"
                f"<nav>{nav}</nav>{body}</body></html>")


def table(frame: pd.DataFrame, max_rows: int = 200) -> str:
    """A DataFrame as a compact HTML table (lists and dicts shown as JSON)."""
    if frame is None or not len(frame):
        return "<p class='muted'>none</p>"
    f = frame.head(max_rows).copy()
    for c in f.columns:
        if f[c].map(lambda v: isinstance(v, (list, dict, tuple))).any():
            f[c] = f[c].map(lambda v: json.dumps(v, default=str) if isinstance(v, (list, dict, tuple)) else v)
    more = f"<p class='muted'>{len(frame) - max_rows} more rows not shown</p>" if len(frame) > max_rows else ""
    return f.to_html(index=False, classes="trtlab", border=0, float_format=lambda v: f"{v:.4g}",
                     na_rep="") + more


def _frame_of(record: dict[str, Any]) -> pd.DataFrame | None:
    """The CSV table the workspace wrote beside a result's JSON, if any."""
    csv = Path(record["path"]).with_suffix(".csv")
    if not csv.exists():
        return None
    try:
        return pd.read_csv(csv)
    except Exception as exc:
        warnings.warn(f"report: skipping the table {csv} ({type(exc).__name__}: {exc})", stacklevel=2)
        return None


def _scalars(record: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in record.items()
           if isinstance(v, (int, float, str, bool)) and k not in ("path",) and not (isinstance(v, float)
                                                                                    and math.isnan(v))}
    if isinstance(out.get("created"), (int, float)):
        out["created"] = dt.datetime.fromtimestamp(out["created"]).strftime("%Y-%m-%d %H:%M:%S")
    return out


def _parsed(records: list[dict[str, Any]], parse: Any) -> list[tuple[dict[str, Any], Any]]:
    """(record, parsed result) for each stored record that parses; damaged records are skipped, not fatal."""
    out = []
    for rec in records:
        try:
            out.append((rec, parse(rec)))
        except Exception as exc:
            warnings.warn(f"report: skipping damaged record {rec.get('path')} ({type(exc).__name__}: {exc})",
                          stacklevel=2)
    return out


def _mix_text(profile: Any) -> str:
    """The one-line effective precision of a stored profile (what its layers computed in), or ''."""
    if not profile.meta.get("precision"):
        return ""
    try:
        return profile.effective_precision().summary
    except Exception:  # a profile stored before the table had the columns
        return ""


def _guard(parts: list[str], what: str, fn: Any) -> None:
    """Append fn()'s HTML; a chart that cannot be drawn becomes a note, never a failed report."""
    try:
        parts.append(fn())
    except Exception as exc:
        parts.append(f"<p class='muted'>{esc(what)}: not drawn ({esc(type(exc).__name__)}: "
                     f"{esc(str(exc))})</p>")


def write_report(session: "Session", path: str | Path = "report.html", title: str | None = None,
                 monitors: Iterable[Any] | None = None) -> Path:
    """Write the session's report to `path` and return the path."""
    from . import plots
    from .analysis.benchmark import BenchmarkResult
    from .tables import LayerProfile

    rb = ReportBuilder(title or f"trtlab report: {session.model.name}")
    records = session.workspace.results()
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        by_kind.setdefault(str(rec.get("kind")), []).append(rec)

    env = rb.section("environment", "Environment")
    _guard(env, "environment", lambda: f"<pre>{esc(str(session.info()))}</pre>")

    eng = rb.section("engines", "Engines")
    _guard(eng, "engines", lambda: table(session.engines()))

    bench = rb.section("benchmarks", "Benchmarks")
    results = _parsed(by_kind.pop("benchmark", []), BenchmarkResult.from_dict)
    if results:
        bench.append(table(pd.DataFrame([{"id": r["id"], **b.summary()} for r, b in results])))
        for rec, b in results[-MAX_PER_SECTION:]:
            bench.append(f"<h3>{esc(b.engine)} <span class='muted'>{esc(rec['id'])}</span></h3>"
                         f"<pre>{esc(str(b))}</pre>")
            _guard(bench, "latency histogram", lambda b=b: rb.figure(plots.latency_histogram(
                b.to_frame(), title=f"{plot_text(b.engine)}: latency distribution")))
            _guard(bench, "latency timeline", lambda b=b: rb.figure(plots.latency_timeline(
                b.to_frame(), title=f"{plot_text(b.engine)}: latency over the run")))
    else:
        bench.append("<p class='muted'>no benchmarks in this workspace yet (Session.benchmark)</p>")

    layers = rb.section("layers", "Per-layer profiles")
    profiles = _parsed(by_kind.pop("profile", []), LayerProfile.from_dict)
    if profiles:
        layers.append(table(pd.DataFrame([{"id": r["id"], "engine": p.engine, "layers": len(p.frame),
                                           "runs": p.runs, "total_ms": p.total_ms,
                                           "effective_precision": _mix_text(p)} for r, p in profiles])))
        latest: dict[str, LayerProfile] = {}
        for _rec, p in profiles:
            latest[p.engine] = p
        for p in list(latest.values())[-MAX_PER_SECTION:]:
            mix = _mix_text(p)
            if mix:
                layers.append(f"<p class='{'muted' if 'NOT computed' not in mix else 'warning'}'>"
                              f"<b>{esc(p.engine)}</b>: {esc(mix)}</p>")
            _guard(layers, "layer timings", lambda p=p: rb.figure(plots.layer_timings(
                p.frame, top=25, color_by="effective_precision" if p.meta.get("precision") else "op_type",
                title=f"{plot_text(p.engine)}: per-layer time (top 25 of {len(p.frame)})")))
            _guard(layers, "op types", lambda p=p: rb.figure(plots.op_type_breakdown(
                p.by_op_type(), title=f"{plot_text(p.engine)}: time by op type")))
        if len(latest) >= 2:
            names = list(latest)
            a, b = latest[names[0]], latest[names[-1]]
            _guard(layers, "layer comparison", lambda: rb.figure(plots.layer_comparison(
                a.frame, b.frame, (names[0], names[-1]), top=30)))
    else:
        layers.append("<p class='muted'>no layer profiles yet (Session.profile_layers)</p>")

    sweeps = by_kind.pop("sweep", []) + by_kind.pop("tune", [])
    if sweeps:
        sw = rb.section("sweeps", "Sweeps and tuning")
        for rec in sweeps[-MAX_PER_SECTION:]:
            frame = _frame_of(rec)
            sw.append(f"<h3>{esc(str(rec.get('kind')))} <span class='muted'>{esc(rec['id'])}"
                      f"</span></h3>")
            if frame is not None and {"batch", "throughput_ips"} <= set(frame.columns):
                ok = frame[frame["status"] == "ok"] if "status" in frame else frame
                _guard(sw, "throughput vs batch", lambda ok=ok: rb.figure(plots.throughput_vs_batch(
                    ok, color="precision" if "precision" in ok else None)))
            sw.append(table(frame) if frame is not None else table(pd.DataFrame([_scalars(rec)])))

    fronts = by_kind.pop("pareto", [])
    if fronts:
        pf = rb.section("pareto", "Accuracy against speed (Pareto front)")
        for rec in fronts[-MAX_PER_SECTION:]:
            points = pd.DataFrame(rec.get("points") or [])
            pf.append(f"<h3>pareto <span class='muted'>{esc(rec['id'])}</span></h3>"
                      f"<p>{esc(str(rec.get('describe', '')))}</p>")
            if not points.empty:
                _guard(pf, "Pareto front", lambda p=points, r=rec: rb.figure(plots.pareto_front(
                    p, str(r.get("accuracy", "rel_rms_err")), str(r.get("objective", "latency")))))
                pf.append(table(points))

    if by_kind:  # comparisons and any other analysis: the stored table, with precision charts where they fit
        cmp = rb.section("comparisons", "Comparisons and other results")
        for kind, recs in by_kind.items():
            for rec in recs[-MAX_PER_SECTION:]:
                frame = _frame_of(rec)
                cmp.append(f"<h3>{esc(kind)} <span class='muted'>{esc(rec['id'])}</span></h3>")
                cmp.append(table(pd.DataFrame([_scalars(rec)])))
                if frame is None:
                    continue
                div = rec.get("first_divergence")
                prec = rec.get("range_precision", "fp16")
                for make in (lambda: plots.deviation_ratio(frame, divergence=div),
                             lambda: plots.error_growth(frame, divergence=div),
                             lambda: plots.fp16_range_counts(frame, precision=prec)):
                    try:
                        fig = make()
                    except Exception:
                        continue  # this table has no columns for that chart
                    cmp.append(rb.figure(fig))
                cmp.append(table(frame))

    mons = list(monitors) if monitors is not None else list(getattr(session, "_ui_monitors", []))
    mon_frames = [(m, m.to_frame()) for m in mons]
    mon_frames = [(m, f) for m, f in mon_frames if len(f)]
    mon = rb.section("monitor", "Monitor traces")
    if mon_frames:
        for m, f in mon_frames[-MAX_PER_SECTION:]:
            _guard(mon, "monitor", lambda m=m, f=f: rb.figure(plots.monitor_timeline(
                f, title=f"{plot_text(m.source)}: {len(f)} samples every {m.interval:g} s")))
    else:
        mon.append("<p class='muted'>no monitor recordings in this session (Session.monitor)</p>")

    log = rb.section("log", "Log")
    log.append(f"<pre>{esc(session.log.text('info')[-200_000:])}</pre>")

    from .errors import WorkspaceError
    from .workspace import atomic_write
    page = rb.html()
    try:
        return atomic_write(Path(path), page)  # a failed write leaves the previous report as it was
    except OSError as exc:
        raise WorkspaceError(f"could not write the report {path} ({type(exc).__name__}: {exc}); any previous report "
                             f"there is unchanged: free space or choose another path") from None


register("report", write_report)  # Session.report(path, title=...)
