"""Charts as SVG, rendered on the server from the data (no JavaScript, no library): the page is
a chart even with scripts off, and the CSP needs no exception. Colours are presentation
attributes (not style attributes, which default-src 'self' would block)."""
from __future__ import annotations

from decimal import Decimal

from markupsafe import Markup, escape

PALETTE = ("#2f5bd3", "#e0782c", "#2a9d6a", "#b23a8a", "#8a6d1f", "#6b7280")


def _nice_max(v: int) -> int:
    """A round top for the axis, >= v (1, 2, 5 x 10^k)."""
    if v <= 0:
        return 1
    p = 1
    while p * 10 <= v:
        p *= 10
    for m in (1, 2, 5, 10):
        if m * p >= v:
            return m * p
    return 10 * p


def stacked_bars(labels: list[str], series: list[tuple[str, list[int]]], *, unit_nano: bool = True,
                 title: str = "", width: int = 720, height: int = 240) -> Markup:
    """Stacked columns, one per label; `series` is (name, one value per label), drawn in order.
    Values are nano-USD when `unit_nano` (the axis shows USD)."""
    left, right, top, bottom = 56, 8, 10, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(1, len(labels))
    totals = [sum(vals[i] for _, vals in series) for i in range(len(labels))]
    top_value = _nice_max(max(totals, default=0))
    slot = plot_w / n
    bar_w = max(1.0, slot * 0.72)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="{escape(title)}"><title>{escape(title)}</title>']
    for k in range(5):  # grid and axis labels
        v = top_value * k // 4
        y = top + plot_h - plot_h * k / 4
        label = _usd(v) if unit_nano else str(v)
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#dde2ea"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#5b6475">'
                   f'{escape(label)}</text>')
    for i, lab in enumerate(labels):
        x = left + slot * i + (slot - bar_w) / 2
        y = top + plot_h
        for s, (name, vals) in enumerate(series):
            v = vals[i]
            if v <= 0:
                continue
            h = plot_h * v / top_value
            y -= h
            tip = f"{lab} {name}: {_usd(v) if unit_nano else v}"
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{max(h, 0.5):.1f}" '
                       f'fill="{PALETTE[s % len(PALETTE)]}"><title>{escape(tip)}</title></rect>')
        if i % max(1, n // 6) == 0 or i == n - 1:
            out.append(f'<text x="{left + slot * i + slot / 2:.1f}" y="{height - 6}" text-anchor="middle" '
                       f'font-size="11" fill="#5b6475">{escape(lab)}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def _usd(nano: int) -> str:
    d = Decimal(nano) / Decimal(10**9)
    if d == 0:
        return "$0"
    if d >= 100:
        return f"${d:.0f}"
    if d >= 1:
        return f"${d:.2f}"
    return f"${d:.4f}".rstrip("0")
