"""Charts as SVG, rendered on the server from numbers: no JavaScript, no library, no CDN.

`bar_chart` draws one series (e.g. requests per day), `stacked_bar_chart` several stacked per
column (e.g. spend per day by model, with a legend). Each column has a <title> (the browser shows
it as a tooltip) and the chart an aria-label, so it reads without seeing it. Every text is escaped;
the SVG scales to its container's width (viewBox), so it fits a phone's screen.

A floor: imports only the standard library. Values are ints (counts or nano-USD); `fmt` turns one
into the text shown.
"""
from __future__ import annotations

from html import escape
from typing import Callable, Sequence

WIDTH, HEIGHT = 720, 220
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 64, 12, 16, 28
PALETTE = ("#4f6bed", "#e8871e", "#2aa876", "#d64545", "#8e5cd9", "#1b9dc9", "#c7a600", "#7a7a7a")


def _nice_max(v: int) -> int:
    """The axis top: the smallest 1/2/5 x 10^k at or above v (at least 1)."""
    if v <= 1:
        return 1
    k = 1
    while True:
        for m in (1, 2, 5):
            if m * k >= v:
                return m * k
        k *= 10


def _frame(label: str, body: list[str], top_text: str, labels: Sequence[str], legend: list[str]) -> str:
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    x0, y0 = PAD_LEFT, PAD_TOP + plot_h
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT + (18 if legend else 0)}" '
             f'width="100%" role="img" aria-label="{escape(label)}" class="chart">',
             f"<title>{escape(label)}</title>",
             f'<line x1="{x0}" y1="{y0}" x2="{WIDTH - PAD_RIGHT}" y2="{y0}" stroke="#999" stroke-width="1"/>',
             f'<line x1="{x0}" y1="{PAD_TOP}" x2="{WIDTH - PAD_RIGHT}" y2="{PAD_TOP}" stroke="#ddd" '
             f'stroke-dasharray="3 3"/>',
             f'<text x="{x0 - 6}" y="{PAD_TOP + 4}" text-anchor="end" font-size="11" fill="#555">'
             f"{escape(top_text)}</text>",
             f'<text x="{x0 - 6}" y="{y0}" text-anchor="end" font-size="11" fill="#555">0</text>']
    parts += body
    n = len(labels)
    if n:
        step = (WIDTH - PAD_LEFT - PAD_RIGHT) / n
        for i in sorted({0, n // 2, n - 1}):
            cx = x0 + step * (i + 0.5)
            parts.append(f'<text x="{cx:.1f}" y="{y0 + 16}" text-anchor="middle" font-size="11" fill="#555">'
                         f"{escape(labels[i])}</text>")
    parts += legend
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(labels: Sequence[str], values: Sequence[int], *, label: str,
              fmt: Callable[[int], str] = str, color: str = PALETTE[0]) -> str:
    """One bar per label (e.g. per day), its height `value`; `fmt` shows a value."""
    return stacked_bar_chart(labels, {"": list(values)}, label=label, fmt=fmt, colors=(color,))


def stacked_bar_chart(labels: Sequence[str], series: dict[str, Sequence[int]], *, label: str,
                      fmt: Callable[[int], str] = str, colors: Sequence[str] = PALETTE,
                      max_series: int = len(PALETTE)) -> str:
    """Per label, one column stacking each series' value (series beyond `max_series` are summed as
    "other"); a legend names the series when there is more than one unnamed one."""
    n = len(labels)
    names = list(series)
    if len(names) > max_series:
        keep, rest = names[:max_series - 1], names[max_series - 1:]
        merged = {k: list(series[k]) for k in keep}
        merged["other"] = [sum(series[k][i] for k in rest) for i in range(n)]
        series, names = merged, keep + ["other"]
    totals = [sum(max(0, int(series[k][i])) for k in names) for i in range(n)]
    top = _nice_max(max(totals, default=0))
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    y0 = PAD_TOP + plot_h
    step = (WIDTH - PAD_LEFT - PAD_RIGHT) / max(n, 1)
    bar_w = max(1.0, step * 0.7)
    body: list[str] = []
    for i in range(n):
        x = PAD_LEFT + step * i + (step - bar_w) / 2
        y = float(y0)
        tip = [labels[i] + ": " + fmt(totals[i])] + [f"{k}: {fmt(int(series[k][i]))}" for k in names
                                                       if k and int(series[k][i]) > 0]
        body.append(f"<g><title>{escape(chr(10).join(tip))}</title>")
        body.append(f'<rect x="{x:.1f}" y="{PAD_TOP}" width="{bar_w:.1f}" height="{plot_h}" fill="transparent"/>')
        for j, k in enumerate(names):
            v = max(0, int(series[k][i]))
            if not v:
                continue
            h = plot_h * v / top
            y -= h
            body.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                        f'fill="{colors[j % len(colors)]}"/>')
        body.append("</g>")
    legend: list[str] = []
    if any(names):
        lx = float(PAD_LEFT)
        for j, k in enumerate(names):
            legend.append(f'<rect x="{lx:.0f}" y="{HEIGHT + 4}" width="10" height="10" '
                          f'fill="{colors[j % len(colors)]}"/>')
            legend.append(f'<text x="{lx + 14:.0f}" y="{HEIGHT + 13}" font-size="11" fill="#333">{escape(k)}</text>')
            lx += 24 + 7 * min(len(k), 24)
    return _frame(label, body, fmt(top), labels, legend)
