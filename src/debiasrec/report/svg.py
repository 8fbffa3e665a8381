"""Small inline-SVG charts for the HTML report (no JavaScript, no external files, no matplotlib).

Every function returns one ``<svg>`` element as a string with explicit ``width``/``height`` and a
``<title>`` (shown as a tooltip and read by screen readers). Points and bars carry their own
``<title>`` with the exact numbers.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np

PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
    "#1f77b4",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#17becf",
)


def color(i: int) -> str:
    """The ``i``-th colour of the palette (cycled)."""
    return PALETTE[i % len(PALETTE)]


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    start = math.ceil(lo / step) * step
    out = []
    v = start
    while v <= hi + 1e-12 * max(1.0, abs(hi)):
        out.append(round(v, 12))
        v += step
    return out


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 100:
        return f"{v:.0f}"
    if a >= 1:
        return f"{v:.2f}".rstrip("0").rstrip(".")
    return f"{v:.3f}".rstrip("0").rstrip(".")


class _Frame:
    """Axes with linear scales inside a ``width x height`` SVG."""

    def __init__(
        self,
        width: int,
        height: int,
        x: tuple[float, float],
        y: tuple[float, float],
        *,
        left: int = 56,
        right: int = 16,
        top: int = 24,
        bottom: int = 44,
    ) -> None:
        self.w, self.h = width, height
        self.l, self.r, self.t, self.b = left, right, top, bottom
        self.x0, self.x1 = _pad(*x)
        self.y0, self.y1 = _pad(*y)

    def sx(self, v: float) -> float:
        return self.l + (v - self.x0) / (self.x1 - self.x0) * (self.w - self.l - self.r)

    def sy(self, v: float) -> float:
        return self.h - self.b - (v - self.y0) / (self.y1 - self.y0) * (self.h - self.t - self.b)

    def axes(self, xlabel: str, ylabel: str, *, xticks: bool = True) -> str:
        parts = [
            f'<line x1="{self.l}" y1="{self.h - self.b}" x2="{self.w - self.r}" '
            f'y2="{self.h - self.b}" stroke="#444"/>',
            f'<line x1="{self.l}" y1="{self.t}" x2="{self.l}" y2="{self.h - self.b}" '
            'stroke="#444"/>',
        ]
        for v in _ticks(self.y0, self.y1):
            y = self.sy(v)
            parts.append(
                f'<line x1="{self.l - 4}" y1="{y:.1f}" x2="{self.w - self.r}" '
                f'y2="{y:.1f}" stroke="#e6e6e6"/>'
            )
            parts.append(
                f'<text x="{self.l - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(v)}</text>'
            )
        if xticks:
            for v in _ticks(self.x0, self.x1):
                x = self.sx(v)
                parts.append(
                    f'<line x1="{x:.1f}" y1="{self.h - self.b}" x2="{x:.1f}" '
                    f'y2="{self.h - self.b + 4}" stroke="#444"/>'
                )
                parts.append(
                    f'<text x="{x:.1f}" y="{self.h - self.b + 16}" '
                    f'text-anchor="middle">{_fmt(v)}</text>'
                )
        parts.append(
            f'<text x="{(self.l + self.w - self.r) / 2:.1f}" y="{self.h - 6}" '
            f'text-anchor="middle" font-weight="600">{_e(xlabel)}</text>'
        )
        parts.append(
            f'<text transform="translate(14,{(self.t + self.h - self.b) / 2:.1f}) '
            f'rotate(-90)" text-anchor="middle" font-weight="600">{_e(ylabel)}</text>'
        )
        return "".join(parts)


def _pad(lo: float, hi: float) -> tuple[float, float]:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return 0.0, 1.0
    if hi <= lo:
        d = abs(lo) * 0.1 or 0.5
        return lo - d, hi + d
    d = (hi - lo) * 0.08
    return lo - d, hi + d


def _svg(width: int, height: int, title: str, body: str, cls: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot {cls}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" font-size="11" '
        f'font-family="system-ui,sans-serif"><title>{_e(title)}</title>{body}</svg>'
    )


def _legend(names: Sequence[str], x: float, y: float, *, dash: Sequence[bool] = ()) -> str:
    parts = []
    for i, name in enumerate(names):
        yy = y + 14 * i
        d = ' stroke-dasharray="4 2"' if i < len(dash) and dash[i] else ""
        parts.append(
            f'<line x1="{x}" y1="{yy - 4}" x2="{x + 14}" y2="{yy - 4}" '
            f'stroke="{color(i)}" stroke-width="3"{d}/>'
        )
        parts.append(f'<text x="{x + 18}" y="{yy}">{_e(name)}</text>')
    return "".join(parts)


def scatter_frontier(
    points: Sequence[tuple[str, float, float, bool]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    colors: Sequence[str] | None = None,
    width: int = 480,
    height: int = 320,
) -> str:
    """Methods as points ``(name, fairness x, accuracy y, on_frontier)``; the frontier as a line.

    Lower x (less unfair) and higher y (more accurate) are better; Pareto-optimal points are
    filled and joined. ``colors[i]`` colours point ``i`` (default: the palette in order).
    """
    xs = [p[1] for p in points]
    ys = [p[2] for p in points]
    fr = _Frame(width, height, (min(xs), max(xs)), (min(ys), max(ys)), right=80)
    body = [fr.axes(xlabel, ylabel)]
    front = sorted((p for p in points if p[3]), key=lambda p: p[1])
    if len(front) > 1:
        d = " ".join(f"{fr.sx(p[1]):.1f},{fr.sy(p[2]):.1f}" for p in front)
        body.append(
            f'<polyline points="{d}" fill="none" stroke="#333" stroke-width="1.5" '
            'stroke-dasharray="5 3"/>'
        )
    for i, (name, x, y, on) in enumerate(points):
        col = colors[i] if colors is not None else color(i)
        fill = col if on else "#fff"
        body.append(
            f'<circle cx="{fr.sx(x):.1f}" cy="{fr.sy(y):.1f}" r="5" fill="{fill}" '
            f'stroke="{col}" stroke-width="2"><title>{_e(name)}: {xlabel} {x:.4f}, '
            f"{ylabel} {y:.4f}{' (Pareto-optimal)' if on else ''}</title></circle>"
        )
        body.append(
            f'<text x="{fr.sx(x) + 7:.1f}" y="{fr.sy(y) - 6:.1f}" font-size="10" '
            f'fill="#333">{_e(name)}</text>'
        )
    return _svg(width, height, title, "".join(body), "frontier")


def bars_ci(
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[float], Sequence[float], Sequence[float]]],
    *,
    title: str,
    ylabel: str,
    width: int | None = None,
    height: int = 300,
) -> str:
    """Grouped bars with CI whiskers: ``series = [(name, values, ci_low, ci_high), ...]``
    (one value per category)."""
    n_cat, n_ser = len(categories), max(len(series), 1)
    width = width or max(360, 70 + n_cat * (n_ser * 12 + 18) + 150)
    vals = [v for _, vs, _, _ in series for v in vs if np.isfinite(v)]
    whisk = [v for _, _, _, hi in series for v in hi if np.isfinite(v)]
    # Bars set the scale; whiskers may add up to 50% and are clipped beyond (wide CIs of few
    # seeds would otherwise flatten every bar).
    top = max(vals) if vals else 1.0
    top = min(max([top, *whisk]), 1.5 * top) if top > 0 else 1.0
    fr = _Frame(width, height, (0.0, top), (0.0, top), right=150, bottom=60)
    fr.y0 = 0.0
    body = [fr.axes("", ylabel, xticks=False)]
    plot_w = width - fr.l - fr.r
    slot = plot_w / max(n_cat, 1)
    bw = min(16.0, (slot - 10) / n_ser)
    for c, cat in enumerate(categories):
        cx = fr.l + slot * c + slot / 2
        body.append(
            f'<text x="{cx:.1f}" y="{height - fr.b + 14}" text-anchor="middle" '
            f'font-size="10">{_e(cat)}</text>'
        )
        for s, (name, vs, lo, hi) in enumerate(series):
            v = vs[c]
            if not np.isfinite(v):
                continue
            x = cx - n_ser * bw / 2 + s * bw
            y = fr.sy(v)
            body.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw - 1:.1f}" '
                f'height="{max(fr.sy(0) - y, 0.5):.1f}" fill="{color(s)}"><title>{_e(name)}, '
                f"{_e(cat)}: {v:.4f} [{lo[c]:.4f}, {hi[c]:.4f}]</title></rect>"
            )
            if np.isfinite(lo[c]) and np.isfinite(hi[c]):
                xm = x + (bw - 1) / 2
                y_lo = fr.sy(min(max(lo[c], fr.y0), fr.y1))
                y_hi = fr.sy(min(max(hi[c], fr.y0), fr.y1))
                body.append(
                    f'<line x1="{xm:.1f}" y1="{y_lo:.1f}" x2="{xm:.1f}" '
                    f'y2="{y_hi:.1f}" stroke="#222"/>'
                )
    body.append(_legend([s[0] for s in series], width - fr.r + 10, fr.t + 6))
    return _svg(width, height, title, "".join(body), "bars")


def lines(
    series: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    diagonal: bool = False,
    width: int = 520,
    height: int = 340,
) -> str:
    """Line chart ``series = [(name, xs, ys), ...]`` (``diagonal``: the line of equality)."""
    fr = _Frame(width, height, (0.0, 1.0), (0.0, 1.0), right=170)
    fr.x0, fr.x1, fr.y0, fr.y1 = 0.0, 1.0, 0.0, 1.0
    body = [fr.axes(xlabel, ylabel)]
    if diagonal:
        body.append(
            f'<line x1="{fr.sx(0):.1f}" y1="{fr.sy(0):.1f}" x2="{fr.sx(1):.1f}" '
            f'y2="{fr.sy(1):.1f}" stroke="#999" stroke-dasharray="4 3"/>'
        )
    for i, (name, xs, ys) in enumerate(series):
        d = " ".join(f"{fr.sx(x):.1f},{fr.sy(y):.1f}" for x, y in zip(xs, ys, strict=True))
        body.append(
            f'<polyline points="{d}" fill="none" stroke="{color(i)}" stroke-width="2">'
            f"<title>{_e(name)}</title></polyline>"
        )
    body.append(_legend([s[0] for s in series], width - fr.r + 10, fr.t + 6))
    return _svg(width, height, title, "".join(body), "lines")


def heatmap(
    rows: Sequence[str],
    cols: Sequence[str],
    values: np.ndarray,
    *,
    title: str,
    cell: int = 64,
) -> str:
    """Colour-coded matrix ``values[r, c]`` with the numbers written in the cells."""
    left, top = 130, 90
    width = left + cell * len(cols) + 20
    height = top + 28 * len(rows) + 20
    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    span = hi - lo or 1.0
    body = []
    for c, name in enumerate(cols):
        x = left + cell * c + cell / 2
        body.append(
            f'<text transform="translate({x:.1f},{top - 6}) rotate(-35)" '
            f'font-size="10">{_e(name)}</text>'
        )
    for r, name in enumerate(rows):
        y = top + 28 * r
        body.append(f'<text x="{left - 6}" y="{y + 18}" text-anchor="end">{_e(name)}</text>')
        for c, col in enumerate(cols):
            val = v[r, c]
            t = (val - lo) / span if np.isfinite(val) else 0.0
            fill = (
                f"rgb({int(255 - 180 * t)},{int(255 - 120 * t)},{int(255 - 40 * t)})"
                if np.isfinite(val)
                else "#eee"
            )
            x = left + cell * c
            text = f"{val:.3f}" if np.isfinite(val) else "n/a"
            body.append(
                f'<rect x="{x}" y="{y}" width="{cell - 2}" height="26" fill="{fill}">'
                f"<title>{_e(name)}, {_e(col)}: {text}</title></rect>"
            )
            body.append(
                f'<text x="{x + cell / 2 - 1:.1f}" y="{y + 17}" text-anchor="middle" '
                f'font-size="10">{text}</text>'
            )
    return _svg(width, height, title, "".join(body), "heatmap")


def lorenz(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lorenz curve of exposure counts: ``(share of items, share of exposure)``, poorest first."""
    c = np.sort(np.asarray(counts, dtype=np.float64))
    total = c.sum()
    y = (
        np.concatenate([[0.0], np.cumsum(c) / total])
        if total > 0
        else np.linspace(0, 1, len(c) + 1)
    )
    x = np.linspace(0.0, 1.0, len(c) + 1)
    if len(x) > 201:  # thin for the page; the curve is piecewise linear anyway
        idx = np.unique(np.linspace(0, len(x) - 1, 201).round().astype(int))
        x, y = x[idx], y[idx]
    return x, y


__all__ = ["PALETTE", "bars_ci", "color", "heatmap", "lines", "lorenz", "scatter_frontier"]
