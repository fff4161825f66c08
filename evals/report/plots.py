"""The report's plots: each returns PNG bytes (matplotlib, Agg backend, no display)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def pareto(rows: list[dict], x: str, y: str, title: str) -> bytes:
    """Scatter of one row per variant: accuracy (y) against diversity (x), the front joined."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    pts = [(r[x], r[y], r["variant"]) for r in rows if r.get(x) is not None and r.get(y) is not None]
    for px, py, name in pts:
        ax.scatter(px, py, s=36, color="tab:orange" if name.startswith("ampcf") else "tab:blue")
        ax.annotate(name, (px, py), fontsize=7, xytext=(3, 3), textcoords="offset points")
    front, best = [], float("-inf")
    for px, py, _ in sorted(pts, key=lambda p: (-p[0], -p[1])):
        if py > best:
            front.append((px, py))
            best = py
    if front:
        ax.plot(*zip(*sorted(front)), color="grey", lw=1, ls="--", label="Pareto front")
        ax.legend(fontsize=8)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title, fontsize=10)
    return _png(fig)


def bars(labels: list[str], groups: dict[str, list[float | None]], ylabel: str, title: str, ref: float | None = None) -> bytes:
    """Grouped bars: one group of bars per label, one colour per series in ``groups``."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    n = max(1, len(groups))
    width = 0.8 / n
    for i, (series, values) in enumerate(groups.items()):
        xs = [j + i * width for j in range(len(labels))]
        ax.bar(xs, [v if v is not None else 0.0 for v in values], width=width, label=series)
    ax.set_xticks([j + width * (n - 1) / 2 for j in range(len(labels))], labels, rotation=20, fontsize=8)
    if ref is not None:
        ax.axhline(ref, color="red", lw=1, ls="--")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return _png(fig)


def lines(series: dict[str, dict[int, float]], xlabel: str, ylabel: str, title: str) -> bytes:
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    all_x: set[int] = set()
    for name, points in series.items():
        xs = sorted(points)
        all_x.update(xs)
        ax.plot(xs, [points[x] for x in xs], marker="o", label=name)
    ax.set_xticks(sorted(all_x))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.05)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return _png(fig)


def forest(rows: list[dict], title: str) -> bytes:
    """Paired differences with their confidence intervals, one line per metric."""
    fig, ax = plt.subplots(figsize=(6.4, 0.5 + 0.45 * max(1, len(rows))))
    for i, r in enumerate(rows):
        lo, hi, d = r.get("ci_low"), r.get("ci_high"), r.get("diff")
        if d is None or lo is None or hi is None:
            continue
        colour = "tab:green" if r.get("p_holm", 1) < 0.05 else "tab:grey"
        ax.plot([lo, hi], [i, i], color=colour)
        ax.scatter([d], [i], color=colour, zorder=3)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(rows)), [r["metric"] for r in rows], fontsize=8)
    ax.set_xlabel("treatment - control (95% CI)")
    ax.set_title(title, fontsize=10)
    return _png(fig)


def persona_map(xy: list[list[float]], labels: list[str], sizes: list[int], share: list[float], alarm: bool) -> bytes:
    """The personas on the first two principal components of their centroids; marker area ~ persona size."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    top = max(sizes) or 1
    for i, ((x, y), label, size) in enumerate(zip(xy, labels, sizes)):
        ax.scatter(x, y, s=60 + 600 * size / top, color=f"C{i % 10}", alpha=0.75)
        ax.annotate(label, (x, y), fontsize=8, xytext=(6, 6), textcoords="offset points")
    ax.set_xlabel(f"PC1 ({share[0]:.0%} of the centroids' variance)")
    ax.set_ylabel(f"PC2 ({share[1]:.0%})")
    title = "Persona centroids (PCA of the embeddings)"
    ax.set_title(title + (": COLLAPSE ALARM" if alarm else ""), fontsize=10, color="#a40" if alarm else "black")
    ax.margins(0.25)
    return _png(fig)


def mini_map_svg(xy: list[list[float]], highlight: int, size: int = 96) -> str:
    """A small inline SVG of the persona map with one persona (its colour as in persona_map) marked."""
    xs, ys = [p[0] for p in xy], [p[1] for p in xy]
    pad = 10

    def scale(v: float, lo: float, hi: float) -> float:
        return pad + (size - 2 * pad) * ((v - lo) / (hi - lo) if hi > lo else 0.5)

    dots = []
    for i, (x, y) in enumerate(xy):
        cx, cy = scale(x, min(xs), max(xs)), size - scale(y, min(ys), max(ys))
        colour = matplotlib.colors.to_hex(f"C{i % 10}") if i == highlight else "#ccc"
        r = 7 if i == highlight else 4
        dots.append(f"<circle cx='{cx:.1f}' cy='{cy:.1f}' r='{r}' fill='{colour}'/>")
    dots.append(dots.pop(highlight))  # drawn last: on top
    return (f"<svg class='minimap' width='{size}' height='{size}' viewBox='0 0 {size} {size}' role='img' "
            f"aria-label='place on the persona map'><rect width='{size}' height='{size}' fill='#fafafa' "
            f"stroke='#ddd'/>{''.join(dots)}</svg>")


def recsys_map(record: dict) -> bytes:
    """The map's heat map and predictor panel (`recsys.map.heat_map`, the same figure as map.png)."""
    from recsys.map import heat_map

    buf = io.BytesIO()
    heat_map(record, buf)
    return buf.getvalue()
