"""Figures: pure functions from trtlab's analysis DataFrames to plotly Figures (no widgets, no engines).

Every function takes a pandas DataFrame (the `to_frame()` of a result) and returns a
`plotly.graph_objects.Figure` with a title, axis units and hover text. Panels wrap these in
FigureWidgets; the HTML report embeds them; a notebook user can `.show()` them directly.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .analysis.divergence import DIVERGENCE_COLUMNS, first_divergence
from .analysis.knee import KNEE_FRACTION, find_knee
from .errors import ConfigError
from .markup import plot_text

PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#EECA3B", "#B279A2", "#FF9DA6", "#9D755D",
           "#BAB0AC", "#1F77B4", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#17BECF")
PRECISION_COLORS = {"fp32": "#4C78A8", "fp16": "#F58518", "bf16": "#EECA3B", "int8": "#54A24B", "fp8": "#E45756",
                    "int64": "#BAB0AC", "int32": "#9D755D", "bool": "#72B7B2", "fp64": "#B279A2",
                    # effective precision (tables.COLUMNS): fp32 math whose result is kept in fp16, and the steps
                    # that compute nothing of the model
                    "fp32, stored fp16": "#FFBF79", "fp32, stored bf16": "#F2DD8C", "cast": "#9E9E9E",
                    "reformat": "#D0D0D0", "int": "#BAB0AC"}
LAYER_COLOR_BY = ("op_type", "precision", "effective_precision", "provider")
_LAYOUT = dict(template="plotly_white", margin=dict(l=10, r=10, t=50, b=40), hoverlabel=dict(align="left"))


def _require(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ConfigError(f"{what} needs a pandas DataFrame, got {type(frame).__name__}; pass result.to_frame()")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ConfigError(f"{what}: the frame has no column(s) {missing} (it has {list(frame.columns)}); "
                          f"pass the matching result's to_frame()")


def _pick(frame: pd.DataFrame, candidates: Sequence[str], what: str, given: str | None = None) -> str:
    """The first of `candidates` present in the frame (or `given` when set)."""
    if given is not None:
        _require(frame, [given], what)
        return given
    for c in candidates:
        if c in frame.columns:
            return c
    raise ConfigError(f"{what}: the frame has none of the columns {list(candidates)} (it has {list(frame.columns)})")


def _color_map(values: Iterable[Any], fixed: dict[str, str] | None = None) -> dict[Any, str]:
    out: dict[Any, str] = {}
    k = 0
    for v in values:
        if v in out:
            continue
        if fixed and str(v) in fixed:
            out[v] = fixed[str(v)]
        else:
            out[v] = PALETTE[k % len(PALETTE)]
            k += 1
    return out


def _category_ticks(values: Iterable[Any]) -> dict[str, Any]:
    """Axis settings showing category names as text: plotly would render tags in a name as markup."""
    vals = [str(v) for v in values]
    if all(plot_text(v) == v for v in vals):
        return {}
    return dict(tickmode="array", tickvals=vals, ticktext=[plot_text(v) for v in vals])


def _shape_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "?"
    if isinstance(value, (list, tuple, np.ndarray)):
        return ", ".join(str(list(v)) if isinstance(v, (list, tuple, np.ndarray)) else str(v) for v in value)
    return str(value)


def empty_figure(title: str, message: str) -> go.Figure:
    """A blank figure carrying a message (a chart with nothing to show)."""
    fig = go.Figure(layout=dict(title=title, **_LAYOUT))
    fig.add_annotation(text=plot_text(message), showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


# ---- per-layer timings ---------------------------------------------------------------------------------
def effective_labels(frame: pd.DataFrame) -> pd.Series:
    """Legend label per layer of its effective precision: 'fp16', or 'fp32, stored fp16' for fp32 math whose
    result is kept in fp16; 'cast', 'reformat', 'int' as the layer table names them."""
    eff = frame.get("effective_precision", pd.Series("?", index=frame.index)).fillna("?").astype(str)
    stored = frame.get("stored_as", pd.Series(None, index=frame.index))
    return pd.Series([e if not isinstance(st, str) or st == e or e in ("cast", "reformat", "int", "?")
                      else f"{e}, stored {st}" for e, st in zip(eff, stored)], index=frame.index)


def layer_timings(profile_frame: pd.DataFrame, color_by: str = "op_type", top: int | None = None,
                  title: str | None = None) -> go.Figure:
    """Horizontal bars of per-layer median time, slowest on top, coloured by op type or precision."""
    _require(profile_frame, ["name", "median_ms"], "layer_timings")
    if color_by not in LAYER_COLOR_BY:
        raise ConfigError(f"layer_timings(color_by={color_by!r}): choose {', '.join(map(repr, LAYER_COLOR_BY))}")
    f = profile_frame.copy()
    if color_by not in f:
        f[color_by] = "?"
    f[color_by] = f[color_by].fillna("?").astype(str)
    if color_by == "effective_precision":
        f[color_by] = effective_labels(f)
    total = float(f["median_ms"].sum())
    f["share"] = f["median_ms"] / total if total > 0 else 0.0
    f = f.sort_values("median_ms", ascending=False)
    shown = f.head(top) if top else f
    shown = shown.iloc[::-1]  # plotly draws the first category at the bottom
    colors = _color_map(f[color_by], PRECISION_COLORS if color_by in ("precision", "effective_precision") else None)
    fig = go.Figure()
    for group, part in shown.groupby(color_by, sort=False):
        hover = [f"<b>{plot_text(r['name'])}</b><br>op: {plot_text(r.get('op_type', '?'))}  precision: "
                 f"{plot_text(r.get('precision', '?'))}"
                 + (f"  computes in: {plot_text(r.get('effective_precision'))}, stored {plot_text(r.get('stored_as'))}"
                    if isinstance(r.get("effective_precision"), str) else "")
                 + f"<br>in: {plot_text(_shape_text(r.get('input_shapes')))}<br>"
                 f"out: {plot_text(_shape_text(r.get('output_shapes')))}<br>"
                 f"median {r['median_ms']:.4f} ms, {r['share']:.1%} of total"
                 + (f"<br>fused from {len(r['fused_from'])} nodes" if isinstance(r.get("fused_from"), list)
                    and r.get("fused_from") else "")
                 for _, r in part.iterrows()]
        fig.add_trace(go.Bar(x=part["median_ms"], y=part["name"], orientation="h", name=plot_text(group),
                             marker_color=colors[group], hovertext=hover, hoverinfo="text",
                             customdata=part[["share"]].to_numpy()))
    n = len(shown)
    label = f"top {n} of {len(f)}" if top and top < len(f) else f"{len(f)}"
    fig.update_layout(title=title or f"Per-layer time ({label} layers, total {total:.3f} ms)",
                      xaxis_title="median time per layer [ms]", yaxis_title="layer", barmode="stack",
                      height=max(320, 18 * n + 120), legend_title=color_by.replace("_", " "), showlegend=True,
                      yaxis=dict(categoryorder="array", categoryarray=list(shown["name"]),
                                 **_category_ticks(shown["name"])), **_LAYOUT)
    return fig


def op_type_breakdown(by_op_type_frame: pd.DataFrame, kind: str = "treemap", title: str | None = None) -> go.Figure:
    """Time per op type (LayerProfile.by_op_type()) as a treemap or a single stacked bar."""
    _require(by_op_type_frame, ["op_type", "total_ms"], "op_type_breakdown")
    f = by_op_type_frame.sort_values("total_ms", ascending=False)
    total = float(f["total_ms"].sum())
    share = f["total_ms"] / total if total > 0 else f["total_ms"] * 0
    layers = f["layers"] if "layers" in f else pd.Series([None] * len(f), index=f.index)
    hover = [f"<b>{plot_text(o)}</b><br>{t:.4f} ms ({s:.1%})<br>{n if n is not None else '?'} layers"
             for o, t, s, n in zip(f["op_type"], f["total_ms"], share, layers)]
    title = title or f"Time by op type (total {total:.3f} ms)"
    colors = _color_map(f["op_type"])
    if kind == "treemap":
        fig = go.Figure(go.Treemap(labels=[plot_text(o) for o in f["op_type"]], parents=[""] * len(f),
                                   values=list(f["total_ms"]), hovertext=hover, hoverinfo="text",
                                   textinfo="label+percent root",
                                   marker=dict(colors=[colors[o] for o in f["op_type"]])))
        fig.update_layout(title=title, **_LAYOUT)
        return fig
    if kind != "bar":
        raise ConfigError(f"op_type_breakdown(kind={kind!r}): choose 'treemap' or 'bar'")
    fig = go.Figure()
    for o, t, h in zip(f["op_type"], f["total_ms"], hover):
        fig.add_trace(go.Bar(x=[t], y=["all layers"], orientation="h", name=plot_text(o), marker_color=colors[o],
                             hovertext=[h], hoverinfo="text"))
    fig.update_layout(title=title, barmode="stack", xaxis_title="summed median layer time [ms]", height=260,
                      **_LAYOUT)
    return fig


def _group_label(nodes: list[str], layers: list[str]) -> str:
    if len(nodes) == 1:
        return nodes[0]
    if nodes:
        return f"{nodes[0]} .. {nodes[-1]} ({len(nodes)} nodes)"
    return " + ".join(layers) or "?"


def layer_comparison(frame_a: pd.DataFrame, frame_b: pd.DataFrame, labels: Sequence[str] = ("A", "B"),
                     top: int | None = None, title: str | None = None) -> go.Figure:
    """Side-by-side times of two engines' layers paired by the ONNX nodes they cover (tables.compare_layers: the
    layers covering common nodes form one group, as TensorRT Engine Explorer pairs engines); the hover names each
    side's layers and the speed-up. Frames without `fused_from` pair layers of the same name."""
    from .tables import compare_layers
    for fr in (frame_a, frame_b):
        _require(fr, ["name", "median_ms"], "layer_comparison")
    if len(labels) != 2:
        raise ConfigError(f"layer_comparison needs two labels, got {list(labels)}")
    la, lb = (str(x) for x in labels)
    if la == lb:
        la, lb = la + " (A)", lb + " (B)"
    la, lb = plot_text(la), plot_text(lb)  # shown in the legend, hover and title
    m = compare_layers(frame_a, frame_b, (la, lb))
    names = [_group_label(n, a or b) for n, a, b in zip(m["nodes"], m["layers_a"], m["layers_b"])]
    seen: dict[str, int] = {}
    for k, n in enumerate(names):  # one category per group
        seen[n] = seen.get(n, 0) + 1
        if seen[n] > 1:
            names[k] = f"{n} #{seen[n]}"
    m["label"] = [plot_text(n) for n in names]
    shown = (m.head(top) if top else m).iloc[::-1]

    def hover(side: str, label: str) -> list[str]:
        out = []
        for _, r in shown.iterrows():
            t = r[f"ms_{side}"]
            layers = r[f"layers_{side}"]
            text = (f"<b>{r['label']}</b><br>{label}: " + ("no layer" if pd.isna(t) else f"{t:.4f} ms in "
                    f"{len(layers)} layer(s): {plot_text(', '.join(layers[:4]))}{' ...' if len(layers) > 4 else ''}"))
            if not pd.isna(r["speedup"]):
                text += f"<br>{lb}/{la} = {r['ms_b'] / r['ms_a']:.2f}x (speed-up {r['speedup']:.2f}x)"
            out.append(text)
        return out

    fig = go.Figure([
        go.Bar(x=shown["ms_a"], y=shown["label"], orientation="h", name=la, marker_color=PALETTE[0],
               hovertext=hover("a", la), hoverinfo="text"),
        go.Bar(x=shown["ms_b"], y=shown["label"], orientation="h", name=lb, marker_color=PALETTE[1],
               hovertext=hover("b", lb), hoverinfo="text")])
    ta, tb = float(np.nansum(m["ms_a"])), float(np.nansum(m["ms_b"]))
    paired = int((m["status"] == "paired").sum())
    only_a, only_b = int((m["status"] == "only a").sum()), int((m["status"] == "only b").sum())
    sub = (f"{la} {ta:.3f} ms, {lb} {tb:.3f} ms; {paired} groups paired by ONNX node"
           + (f"; {only_a} only in {la}, {only_b} only in {lb}" if only_a or only_b else ""))
    fig.update_layout(title=title or f"Per-layer time: {la} vs {lb}<br><sup>{sub}</sup>", barmode="group",
                      xaxis_title="median time per layer group [ms]", yaxis_title="ONNX nodes",
                      height=max(340, 26 * len(shown) + 140),
                      yaxis=dict(categoryorder="array", categoryarray=list(shown["label"]),
                                 **_category_ticks(shown["label"])), **_LAYOUT)
    return fig


# ---- benchmark ------------------------------------------------------------------------------------------
def latency_histogram(benchmark_frame: pd.DataFrame, title: str | None = None, bins: int = 50) -> go.Figure:
    """Histogram of per-iteration latency (BenchmarkResult.to_frame()) with median and p99 marked."""
    _require(benchmark_frame, ["latency_ms"], "latency_histogram")
    lat = benchmark_frame["latency_ms"].to_numpy(dtype=float)
    fig = go.Figure(go.Histogram(x=lat, nbinsx=bins, name="host latency", marker_color=PALETTE[0],
                                 hovertemplate="%{x} ms: %{y} iterations<extra></extra>"))
    if "device_ms" in benchmark_frame and benchmark_frame["device_ms"].notna().any():
        fig.add_trace(go.Histogram(x=benchmark_frame["device_ms"], nbinsx=bins, name="device time",
                                   marker_color=PALETTE[1], opacity=0.7,
                                   hovertemplate="%{x} ms: %{y} iterations<extra></extra>"))
    if lat.size:
        for label, v, dash in (("median", float(np.median(lat)), "solid"), ("p99", float(np.percentile(lat, 99)),
                                                                             "dash")):
            fig.add_vline(x=v, line_dash=dash, line_color="#333",
                          annotation_text=f"{label} {v:.3f} ms", annotation_position="top right")
    fig.update_layout(title=title or f"Latency distribution ({lat.size} iterations)", xaxis_title="latency [ms]",
                      yaxis_title="iterations", barmode="overlay", **_LAYOUT)
    return fig


def latency_timeline(benchmark_frame: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Latency of each iteration against time since the first one (spots warm-up, throttling, noise)."""
    _require(benchmark_frame, ["start_s", "latency_ms"], "latency_timeline")
    f = benchmark_frame
    it = f["iteration"] if "iteration" in f else pd.Series(range(len(f)))
    fig = go.Figure(go.Scattergl(x=f["start_s"], y=f["latency_ms"], mode="markers+lines", name="host latency",
                                 marker=dict(size=4, color=PALETTE[0]), line=dict(width=1),
                                 customdata=np.asarray(it).reshape(-1, 1),
                                 hovertemplate="iteration %{customdata[0]}<br>t = %{x:.3f} s<br>%{y:.4f} ms"
                                               "<extra></extra>"))
    if "device_ms" in f and f["device_ms"].notna().any():
        fig.add_trace(go.Scattergl(x=f["start_s"], y=f["device_ms"], mode="markers", name="device time",
                                   marker=dict(size=4, color=PALETTE[1]),
                                   hovertemplate="t = %{x:.3f} s<br>%{y:.4f} ms<extra></extra>"))
    fig.update_layout(title=title or "Latency over the run", xaxis_title="time since first iteration [s]",
                      yaxis_title="latency [ms]", **_LAYOUT)
    return fig


# ---- monitor ----------------------------------------------------------------------------------------------
_MONITOR_GROUPS = (
    ("utilization [%]", ("utilization.gpu [%]", "utilization.memory [%]", "cpu.utilization [%]",
                         "memory.utilization [%]")),
    ("memory used [MiB]", ("memory.used [MiB]",)),
    ("clock [MHz]", ("clocks.current.sm [MHz]", "clocks.current.memory [MHz]")),
    ("power [W]", ("power.draw [W]",)),
)


def monitor_groups(columns: Iterable[str]) -> list[tuple[str, list[str]]]:
    """Which monitor columns go on which chart row (only rows with data)."""
    cols = set(columns)
    return [(label, [c for c in group if c in cols]) for label, group in _MONITOR_GROUPS
            if any(c in cols for c in group)]


def monitor_timeline(monitor_frame: pd.DataFrame, per_cpu: bool = False, title: str | None = None) -> go.Figure:
    """Utilization, memory, clocks and power against time (Monitor.to_frame(), NVML or psutil columns)."""
    _require(monitor_frame, ["time_s"], "monitor_timeline")
    f = monitor_frame
    groups = monitor_groups(f.columns)
    if per_cpu:
        cpus = [c for c in f.columns if c.startswith("cpu") and c[3:4].isdigit()]
        if cpus and groups and groups[0][0] == "utilization [%]":
            groups[0] = (groups[0][0], groups[0][1] + cpus)
    if not groups:
        return empty_figure(title or "Monitor", "no utilization columns in this frame")
    fig = make_subplots(rows=len(groups), cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=[g[0] for g in groups])
    k = 0
    for row, (label, cols) in enumerate(groups, start=1):
        for c in cols:
            y = pd.to_numeric(f[c], errors="coerce")
            fig.add_trace(go.Scatter(x=f["time_s"], y=y, mode="lines", name=c, line=dict(color=PALETTE[k % 16]),
                                     hovertemplate=f"{c}<br>t = %{{x:.2f}} s: %{{y:.1f}}<extra></extra>"),
                          row=row, col=1)
            k += 1
        fig.update_yaxes(title_text=label, row=row, col=1)
    fig.update_xaxes(title_text="time [s]", row=len(groups), col=1)
    source = "GPU (NVML)" if "utilization.gpu [%]" in f else "CPU (psutil)"
    fig.update_layout(title=title or f"Monitor: {source}, {len(f)} samples", height=220 * len(groups) + 80,
                      **_LAYOUT)
    return fig


# ---- precision ----------------------------------------------------------------------------------------------
# ComparisonResult.to_frame() (trtlab.analysis.compare) names: ratio = share of elements with relative error > 10%
# (the TensorRT FAQ's deviation ratio), rel_rms_err, max_abs_err, ...; other spellings are accepted too.
DEVIATION_COLUMNS = ("deviation_ratio", "ratio", "max_rel_err", "mean_rel_err", "rel_rms_err", "max_abs_err",
                     "mean_abs_err", "rel_error", "relative_error", "max_rel_error", "mean_rel_error",
                     "max_abs_error", "mean_abs_error", "max_abs_diff")
GROWTH_COLUMNS = ("rel_rms_err", "mean_rel_err", "mean_rel_error", "rel_error", "relative_error", "mean_abs_err",
                  "mean_abs_error", "max_abs_err", "max_abs_error", "deviation_ratio", "ratio")
TENSOR_COLUMNS = ("tensor", "name", "output")
_LABELS = {"ratio": "deviation ratio (elements with rel. error > 10%)",
           "deviation_ratio": "deviation ratio (elements with rel. error > 10%)",
           "rel_rms_err": "relative RMS error", "max_abs_err": "max |ref - cand|", "mean_abs_err": "mean |ref - cand|",
           "max_rel_err": "max relative error", "mean_rel_err": "mean relative error"}
_HOVER_EXTRA = ("shape", "cand_dtype", "max_abs_err", "mean_rel_err", "rel_rms_err", "cosine", "snr_db",
                "elements_over_10pct", "producer", "op_type", "max_abs_error", "mean_abs_error")


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)


def _position(frame: pd.DataFrame, tensor_col: str, divergence: Any) -> int | None:
    """Row position of a divergence given as a tensor name, a position, or a dict with "tensor"/"index"."""
    if divergence is None:
        return None
    if isinstance(divergence, dict):
        divergence = divergence.get("tensor", divergence.get("index"))
    if isinstance(divergence, (int, np.integer)) and not isinstance(divergence, bool):
        return int(divergence) if 0 <= int(divergence) < len(frame) else None
    hits = np.flatnonzero(frame[tensor_col].astype(str).to_numpy() == str(divergence))
    return int(hits[0]) if hits.size else None


def deviation_ratio(compare_frame: pd.DataFrame, value: str | None = None, threshold: float | None = None,
                    divergence: Any = None, title: str | None = None) -> go.Figure:
    """Deviation of each compared tensor in graph order (bars); failing tensors and the first divergence highlighted."""
    t = _pick(compare_frame, TENSOR_COLUMNS, "deviation_ratio")
    v = _pick(compare_frame, DEVIATION_COLUMNS, "deviation_ratio", value)
    f = compare_frame.reset_index(drop=True)
    y = pd.to_numeric(f[v], errors="coerce")
    if "passed" in f:
        bad = ~f["passed"].astype(bool)
    elif threshold is not None:
        bad = y > threshold
    else:
        bad = pd.Series(False, index=f.index)
    first = _position(f, t, divergence)
    extra = [c for c in _HOVER_EXTRA if c in f and c != v]
    hover = [f"<b>{plot_text(r[t])}</b><br>{v} = {plot_text(_fmt(r[v]))}"
             + "".join(f"<br>{c}: {plot_text(_fmt(r[c]))}" for c in extra)
             + ("<br><b>exceeds tolerance</b>" if b else "") + ("<br><b>first divergence</b>" if i == first else "")
             for (i, r), b in zip(f.iterrows(), bad)]
    colors = [PALETTE[3] if b or i == first else PALETTE[0] for i, b in enumerate(bad)]
    fig = go.Figure(go.Bar(x=list(f[t].astype(str)), y=y, marker_color=colors, hovertext=hover, hoverinfo="text",
                           name=v))
    if threshold is not None:
        fig.add_hline(y=threshold, line_dash="dash", annotation_text=f"tolerance {threshold:g}")
    what = (f"{int(bad.sum())} of {len(f)} exceed tolerance" if "passed" in f or threshold is not None
            else f"{len(f)} tensors")
    if first is not None:
        what += f"; first divergence {plot_text(f[t].iloc[first])}"
    label = _LABELS.get(v, v)
    fig.update_layout(title=title or f"{label} per tensor (graph order; {what})", xaxis_title="tensor (graph order)",
                      yaxis_title=label, **_LAYOUT)
    fig.update_xaxes(type="category", showticklabels=len(f) <= 60, **_category_ticks(f[t]))
    return fig


def _range_columns(frame: pd.DataFrame, precision: str) -> list[tuple[str, str]]:
    found = []
    for label in ("overflow", "underflow", "subnormal"):
        for c in (f"{precision}_{label}", label, f"n_{label}", f"{label}_count"):
            if c in frame:
                found.append((label, c))
                break
    return found


def fp16_range_counts(range_frame: pd.DataFrame, precision: str = "fp16", title: str | None = None) -> go.Figure:
    """Per-tensor counts of values that overflow, underflow or turn subnormal in FP16 (or BF16), log scale."""
    t = _pick(range_frame, TENSOR_COLUMNS, "fp16_range_counts")
    found = _range_columns(range_frame, precision)
    if not found:
        raise ConfigError(f"fp16_range_counts: the frame has no overflow/underflow/subnormal count columns "
                          f"(it has {list(range_frame.columns)}); pass ComparisonResult.to_frame() or "
                          f"Session.fp16_range_report().to_frame()")
    f = range_frame.reset_index(drop=True)
    tcol = next((c for c in ("count", "total_elements", "elements", "size") if c in f), None)
    total = pd.to_numeric(f[tcol], errors="coerce") if tcol else pd.Series([np.nan] * len(f))
    fig = go.Figure()
    for k, (label, col) in enumerate(found):
        y = pd.to_numeric(f[col], errors="coerce").fillna(0)
        hover = [f"<b>{plot_text(n)}</b><br>{label}: {int(c):,}"
                 + ("" if pd.isna(tt) or not tt else f" of {int(tt):,} ({c / tt:.2%})")
                 for n, c, tt in zip(f[t], y, total)]
        # log axes cannot show 0: zero counts are drawn as gaps
        fig.add_trace(go.Bar(x=list(f[t].astype(str)), y=y.where(y > 0), name=label, hovertext=hover,
                             hoverinfo="text", marker_color=(PALETTE[3], PALETTE[0], PALETTE[5])[k]))
    n_bad = int((sum(pd.to_numeric(f[c], errors="coerce").fillna(0) for _, c in found) > 0).sum())
    name = precision.upper()
    fig.update_layout(title=title or f"{name} range problems per tensor ({n_bad} of {len(f)} tensors affected)",
                      xaxis_title="tensor (graph order)", yaxis_title="values (log scale)", yaxis_type="log",
                      barmode="group", **_LAYOUT)
    fig.update_xaxes(type="category", showticklabels=len(f) <= 60, **_category_ticks(f[t]))
    if n_bad == 0:
        fig.add_annotation(text=f"no tensor leaves the {name} range", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper")
    return fig


def error_growth(compare_frame: pd.DataFrame, value: str | None = None, threshold: float | None = None,
                 divergence: Any = None, title: str | None = None) -> go.Figure:
    """Error along the graph (tensor order, log y) with the first divergence marked.

    `divergence` (a tensor name, a position, or ComparisonResult.first_divergence()'s dict) says where; otherwise
    the frame's own first divergence (trtlab.analysis.compare.first_divergence) when it has the columns for it.
    `threshold`, when given, is drawn as the tolerance line.
    """
    t = _pick(compare_frame, TENSOR_COLUMNS, "error_growth")
    v = _pick(compare_frame, GROWTH_COLUMNS, "error_growth", value)
    f = compare_frame.reset_index(drop=True)
    y = pd.to_numeric(f[v], errors="coerce")
    x = list(range(len(f)))
    label = _LABELS.get(v, v)
    fig = go.Figure(go.Scatter(x=x, y=y, mode="lines+markers", name=label, marker=dict(size=5, color=PALETTE[0]),
                               customdata=np.asarray([plot_text(n) for n in f[t]], dtype=object).reshape(-1, 1),
                               hovertemplate="%{customdata[0]}<br>position %{x}<br>" + v + " = %{y:.4g}"
                                             "<extra></extra>"))
    if divergence is None and all(c in f for c in DIVERGENCE_COLUMNS):
        divergence = first_divergence(f)
    first = _position(f, t, divergence)
    if first is not None:
        reason = plot_text(divergence.get("reason", "")) if isinstance(divergence, dict) else ""
        where = plot_text(f[t].iloc[first])
        fig.add_trace(go.Scatter(x=[first], y=[y.iloc[first]], mode="markers", name="first divergence",
                                 marker=dict(size=13, color=PALETTE[3], symbol="x"),
                                 hovertext=[f"first divergence: {where}" + (f"<br>{reason}" if reason
                                                                                      else "")],
                                 hoverinfo="text"))
        fig.add_vline(x=first, line_dash="dot", line_color=PALETTE[3],
                      annotation_text=f"first divergence: {where}", annotation_position="top left")
    if threshold is not None:
        fig.add_hline(y=threshold, line_dash="dash", annotation_text=f"tolerance {threshold:g}")
    positive = bool((y > 0).any())
    fig.update_layout(title=title or f"Error growth along the graph ({label})" + ("" if first is not None
                                                                                  else ": no divergence"),
                      xaxis_title="tensor position in graph order",
                      yaxis_title=label + (" (log scale)" if positive else ""),
                      yaxis_type="log" if positive else "linear", **_LAYOUT)
    if len(f) <= 60:  # name the tensors on the axis while they fit
        fig.update_xaxes(tickmode="array", tickvals=x, ticktext=[plot_text(n) for n in f[t]])
    return fig


# ---- sweeps ----------------------------------------------------------------------------------------------
def throughput_vs_batch(sweep_frame: pd.DataFrame, x: str = "batch", y: str = "throughput_ips",
                        color: str | None = "precision", latency: str | None = "latency_p99_ms",
                        mark_knee: bool = True, title: str | None = None) -> go.Figure:
    """Throughput (and tail latency on a second axis) against batch size, one line per precision, knee marked."""
    _require(sweep_frame, [x, y], "throughput_vs_batch")
    f = sweep_frame.sort_values(x)
    groups = list(f.groupby(color, sort=False)) if color and color in f else [("", f)]
    has_lat = bool(latency and latency in f)
    fig = make_subplots(specs=[[{"secondary_y": has_lat}]])
    unit = "samples/s" if "sample" in y else "inferences/s" if "ips" in y or "qps" in y else ""
    for k, (g, part) in enumerate(groups):
        c = PRECISION_COLORS.get(str(g), PALETTE[k % 16])
        label = plot_text(g) if g != "" else y
        fig.add_trace(go.Scatter(x=part[x], y=part[y], mode="lines+markers", name=f"{label} throughput",
                                 line=dict(color=c), legendgroup=label,
                                 hovertemplate=f"{label}<br>{x} %{{x}}<br>%{{y:.1f}} {unit}<extra></extra>"),
                      secondary_y=False)
        if has_lat:
            fig.add_trace(go.Scatter(x=part[x], y=part[latency], mode="lines+markers", name=f"{label} {latency}",
                                     line=dict(color=c, dash="dot"), marker=dict(symbol="diamond"),
                                     legendgroup=label,
                                     hovertemplate=f"{label}<br>{x} %{{x}}<br>%{{y:.3f}} ms<extra></extra>"),
                          secondary_y=True)
        if mark_knee:
            k = find_knee(part[x].to_numpy(), part[y].to_numpy(), KNEE_FRACTION)
            if k.batch is not None:
                fig.add_trace(go.Scatter(x=[k.batch], y=[k.throughput], mode="markers",
                                         name=f"{label} knee", legendgroup=label,
                                         marker=dict(size=14, color=c, symbol="star", line=dict(width=1, color="#000")),
                                         hovertext=[f"knee ({label}): {x} {k.batch} reaches {KNEE_FRACTION:.0%} of the "
                                                    f"best throughput"], hoverinfo="text"), secondary_y=False)
    fig.update_xaxes(title_text=x, type="log" if f[x].min() > 0 and f[x].max() / max(f[x].min(), 1) >= 16 else "linear")
    fig.update_yaxes(title_text=f"throughput [{unit}]" if unit else y, secondary_y=False)
    if has_lat:
        fig.update_yaxes(title_text=f"{latency} [ms]", secondary_y=True)
    fig.update_layout(title=title or f"Throughput vs {x}", **_LAYOUT)
    return fig


__all__ = ["deviation_ratio", "empty_figure", "error_growth", "fp16_range_counts",
           "latency_histogram", "latency_timeline", "layer_comparison", "layer_timings", "monitor_groups",
           "monitor_timeline", "op_type_breakdown", "throughput_vs_batch"]


def pareto_front(points_frame: pd.DataFrame, accuracy: str = "rel_rms_err", objective: str = "latency",
                 title: str | None = None) -> go.Figure:
    """Accuracy (y) against speed (x) of every point of a ParetoResult frame: the non-dominated points joined in
    order of speed, the fp32 reference points marked with a star."""
    col, unit = ("latency_median_ms", "ms") if objective == "latency" else ("samples_per_s", "samples/s")
    _require(points_frame, ["label", "accuracy", "pareto", "precision", col], "pareto points")
    f = points_frame

    def hover(rows: pd.DataFrame) -> list[str]:  # the label and the pinned node names (escaped: names are untrusted)
        pins = rows["fp32_layers"] if "fp32_layers" in rows else [None] * len(rows)
        return [plot_text(f"{lab}; fp32 pins: {', '.join(map(str, p))}" if isinstance(p, (list, tuple)) and p
                          else str(lab)) for lab, p in zip(rows["label"], pins)]
    fig = go.Figure()
    ref = f["precision"] == "fp32"
    fig.add_trace(go.Scatter(x=f.loc[~ref, col], y=f.loc[~ref, "accuracy"], mode="markers", name="points",
                             text=hover(f[~ref]), marker=dict(size=9)))
    front = f[f["pareto"]].sort_values(col)
    fig.add_trace(go.Scatter(x=front[col], y=front["accuracy"], mode="lines+markers", name="Pareto front",
                             text=hover(front), line=dict(dash="dot")))
    fig.add_trace(go.Scatter(x=f.loc[ref, col], y=f.loc[ref, "accuracy"], mode="markers", name="fp32 reference",
                             text=hover(f[ref]),
                             marker=dict(symbol="star", size=14, color="black")))
    speed = "median latency (ms)" if objective == "latency" else f"throughput ({unit})"
    acc = f"{accuracy} (%, higher is better)" if accuracy in ("top1", "top5") else \
        f"{accuracy} of the worst model output against fp32 (ratio, lower is better)" if accuracy.endswith("_err") \
        else f"{accuracy} (metric value)"
    fig.update_layout(title=title or f"Accuracy against speed: {accuracy} / {objective}",
                      xaxis_title=speed, yaxis_title=acc, hovermode="closest")
    return fig
