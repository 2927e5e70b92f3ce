"""Figures drawn from run records and snapshots (never from a live model).

Matplotlib's object-oriented API (``Figure``) needs no GUI backend; image grids are
tiled by torchvision's ``make_grid``. Every file is written atomically.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from ..results.files import write_bytes
from .leaderboard import Board, header

DPI = 110


def save(fig: Figure, path: Path, pad: float = 0.1) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", pad_inches=pad)
    write_bytes(path, buffer.getvalue())
    return path


def tile(images: np.ndarray, per_row: int) -> np.ndarray:
    """uint8 images (N, C, H, W) -> one (H', W') or (H', W', 3) array with white gaps."""
    from .._torchvision_compat import ensure_torchvision

    make_grid = ensure_torchvision().utils.make_grid
    grid = make_grid(torch.from_numpy(images), nrow=per_row, padding=2, pad_value=255)
    grid = grid.permute(1, 2, 0).numpy()
    return grid[..., 0] if images.shape[1] == 1 else grid


def show_grid(ax, images: np.ndarray, per_row: int, row_labels=(), col_labels=()) -> None:
    """Images in a grid with optional labels on the left and on top."""
    ax.imshow(tile(images, per_row), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    h, w = images.shape[2] + 2, images.shape[3] + 2  # cell size including the gap
    ax.set_yticks([2 + h * i + h / 2 - 1 for i in range(len(row_labels))], list(row_labels))
    ax.set_xticks([2 + w * i + w / 2 - 1 for i in range(len(col_labels))], list(col_labels),
                  rotation=45, ha="left")
    ax.xaxis.tick_top()
    ax.tick_params(length=0, labelsize=8)
    for side in ax.spines.values():
        side.set_visible(False)


def _names(snap: dict, labels) -> list[str]:
    names = [plain(n) for n in snap.get("class_names", [])]
    return [names[int(i)] if int(i) < len(names) else str(int(i)) for i in labels]


def _title(rec: dict) -> str:
    return plain(f"{rec['label']} (seed {rec['seed']})")


def plain(text) -> str:
    """Text shown as written: matplotlib would read a pair of '$' as a formula (and may fail on it)."""
    return str(text).replace("$", r"\$")


# -- one run -----------------------------------------------------------------------

def _run_figures(rec: dict, snap: dict) -> list[tuple[str, object]]:
    """(file name, drawing function) of every figure that applies to one run."""
    out = [("losses.png", lambda p: losses(p, rec))] if rec.get("history") else []
    table = [("reconstructions", "reconstructions.png", reconstructions), ("samples", "samples.png", samples),
             ("latent_mean", "latent.png", None), ("interpolation", "interpolation.png", interpolation),
             ("manifold", "manifold.png", manifold), ("traversal", "traversal.png", traversal)]
    for key, name, draw in table:
        if key in snap:
            out.append((name, (lambda p, d=draw: d(p, rec, snap)) if draw else None))
    return out


def run_figure_paths(run_dir: Path, rec: dict, snap: dict) -> list[Path]:
    """The files :func:`run_figures` writes for this run."""
    return [run_dir / name for name, _ in _run_figures(rec, snap)]


def run_figures(run_dir: Path, rec: dict, snap: dict, projection: str = "pca") -> list[Path]:
    """Every figure that applies to one run, written into ``run_dir``."""
    out = []
    for name, draw in _run_figures(rec, snap):
        path = run_dir / name
        out.append(latent(path, rec, snap, projection) if draw is None else draw(path))
    return out


def reconstructions(path: Path, rec: dict, snap: dict) -> Path:
    images = np.concatenate([snap["originals"], snap["reconstructions"]])
    n = len(snap["originals"])
    fig = Figure(figsize=(n * 0.6 + 1.2, 2.2))
    ax = fig.subplots()
    show_grid(ax, images, n, ["original", "reconstruction"], _names(snap, snap["originals_labels"]))
    ax.set_title(f"Reconstructions of test images: {_title(rec)}", fontsize=9, pad=28)
    return save(fig, path)


def samples(path: Path, rec: dict, snap: dict) -> Path:
    images, per_row = snap["samples"], 10
    rows = len(images) // per_row
    row_labels = _names(snap, snap["sample_labels"][::per_row]) if "sample_labels" in snap else ()
    fig = Figure(figsize=(per_row * 0.5 + (1.4 if len(row_labels) else 0.4), rows * 0.5 + 0.6))
    ax = fig.subplots()
    show_grid(ax, images, per_row, row_labels)
    what = "one row per class" if len(row_labels) else "from the prior"
    ax.set_title(f"Samples, {what}: {_title(rec)}", fontsize=9)
    return save(fig, path)


def losses(path: Path, rec: dict) -> Path:
    """Each varying training loss against steps, then the metrics evaluated during training."""
    history = rec["history"]
    keys = [k for k in history[0] if k not in ("step", "epoch", "seconds")
            and len({round(h.get(k, math.nan), 12) for h in history}) > 1]
    evals = rec.get("eval_history") or []
    eval_keys = [k for k in (evals[0] if evals else {}) if k not in ("step", "epoch", "seconds", "flops")
                 and any(e.get(k) is not None for e in evals)]
    panels = len(keys) + len(eval_keys) or 1
    cols = min(3, panels)
    fig = Figure(figsize=(3.3 * cols, 2.5 * math.ceil(panels / cols)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(math.ceil(panels / cols), cols)).flatten()
    steps = [h["step"] for h in history]
    for ax, key in zip(axes, keys):
        ax.plot(steps, [h.get(key) for h in history], lw=1.2)
        ax.set_title(f"training {key}", fontsize=9)
    info = rec.get("metric_info") or {}
    for ax, key in zip(axes[len(keys):], eval_keys):
        ax.plot([e["step"] for e in evals], [e.get(key) for e in evals], "o-", color="C1", lw=1.2, ms=3)
        ax.set_title(f"{header(key, info)}, {rec.get('curve_images', '?')} test images", fontsize=9)
    for ax in axes[:panels]:
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[panels:]:
        ax.set_visible(False)
    fig.suptitle(f"Training curves: {_title(rec)}", fontsize=10)
    return save(fig, path)


def project(points: np.ndarray, method: str = "pca", seed: int = 0) -> tuple[np.ndarray, tuple[str, str]]:
    """2-D coordinates of ``points`` and the axis names."""
    points = points.astype(np.float64)
    if points.shape[1] == 2:
        return points, ("z1", "z2")
    if method == "tsne":
        from sklearn.manifold import TSNE  # optional dependency: genbench[tsne]

        tsne = TSNE(n_components=2, init="pca", random_state=seed, perplexity=min(30, len(points) - 1))
        return tsne.fit_transform(points), ("t-SNE 1", "t-SNE 2")
    centred = points - points.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    share = s ** 2 / max(float((s ** 2).sum()), 1e-12)
    return centred @ vt[:2].T, (f"PC1 ({share[0]:.0%} of variance)", f"PC2 ({share[1]:.0%})")


def latent(path: Path, rec: dict, snap: dict, projection: str = "pca") -> Path:
    coords, (xlabel, ylabel) = project(snap["latent_mean"], projection, rec.get("seed", 0))
    labels = snap["latent_labels"]
    fig = Figure(figsize=(5.6, 4.2))
    ax = fig.subplots()
    for c in np.unique(labels):
        mask = labels == c
        ax.scatter(coords[mask, 0], coords[mask, 1], s=3, alpha=0.6, color=f"C{int(c) % 10}",
                   label=_names(snap, [c])[0], rasterized=True)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, markerscale=3, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    dim = snap["latent_mean"].shape[1]
    how = "" if dim == 2 else f", {dim}-D projected by {'t-SNE' if projection == 'tsne' else 'PCA'}"
    ax.set_title(f"Posterior means of {len(labels)} test images{how}\n{_title(rec)}", fontsize=9)
    return save(fig, path)


def interpolation(path: Path, rec: dict, snap: dict) -> Path:
    ends, strip = snap["interpolation_ends"], snap["interpolation"]
    images = np.concatenate([ends[:1], strip, ends[1:]])
    names = _names(snap, [snap["interpolation_labels"][0], snap["interpolation_labels"][1]]) \
        if "interpolation_labels" in snap else ["start", "end"]
    cols = [names[0]] + [f"{t:.2g}" for t in np.linspace(0, 1, len(strip))] + [names[1]]
    fig = Figure(figsize=(len(images) * 0.6 + 0.4, 1.5))
    ax = fig.subplots()
    show_grid(ax, images, len(images), (), cols)
    ax.set_title(f"Decoded interpolation between two test images' posterior means (the originals at the "
                 f"ends): {_title(rec)}", fontsize=9, pad=22)
    return save(fig, path, pad=0.3)  # room for the rotated class names at the ends


def manifold(path: Path, rec: dict, snap: dict) -> Path:
    q = snap["manifold_quantiles"]
    fig = Figure(figsize=(6, 6.2))
    ax = fig.subplots()
    show_grid(ax, snap["manifold"], len(q))
    h = snap["manifold"].shape[2] + 2
    ticks = [2 + h * i + h / 2 - 1 for i in range(len(q))][::2]
    ax.set_xticks(ticks, [f"{v:.1f}" for v in q[::2]])
    ax.set_yticks(ticks, [f"{v:.1f}" for v in q[::-1][::2]])
    ax.xaxis.tick_bottom()
    ax.set_xlabel("z1", fontsize=8)
    ax.set_ylabel("z2", fontsize=8)
    ax.set_title(f"Decoded 2-D latent plane (prior quantiles 5%..95%): {_title(rec)}", fontsize=9)
    return save(fig, path)


def traversal(path: Path, rec: dict, snap: dict) -> Path:
    values, images = snap["traversal_values"], snap["traversal"]
    dims, steps = values.shape
    kl = snap.get("traversal_kl")
    rows = [f"z{i}" + (f" (KL {kl[i]:.2f})" if kl is not None and i < len(kl) else "") for i in range(dims)]
    fig = Figure(figsize=(steps * 0.7 + 1.4, dims * 0.7 + 0.6))
    ax = fig.subplots()
    cols = [f"{v:.2g}" for v in values[0]] if kl is not None else [f"{q:.0f}%" for q in np.linspace(2, 98, steps)]
    show_grid(ax, images, steps, rows, cols)
    ranged = "from -2 to 2 (the prior)" if kl is not None else "over each code's 2nd..98th percentile"
    ax.set_title(f"Latent traversals, one dimension per row {ranged}, the others at a test image's code: "
                 f"{_title(rec)}", fontsize=9, pad=22)
    return save(fig, path)


# -- a whole suite -----------------------------------------------------------------

def _first_per_label(records: list[dict], snaps: dict[str, dict], key: str,
                     order: list[str]) -> list[tuple[dict, dict]]:
    """(record, snapshot) of the lowest seed of each configuration that has ``key``, in suite order."""
    chosen: dict[str, tuple[dict, dict]] = {}
    for r in sorted(records, key=lambda r: r["seed"]):
        snap = snaps.get(r["run_id"])
        if r.get("status") == "ok" and snap and key in snap and r["label"] not in chosen:
            chosen[r["label"]] = (r, snap)
    rank = {label: i for i, label in enumerate(order)}
    return sorted(chosen.values(), key=lambda p: rank.get(p[0]["label"], len(order)))


def comparison(path: Path, records: list[dict], snaps: dict[str, dict], order: list[str]) -> Path | None:
    """The same test images: originals, then each configuration's reconstructions."""
    pairs = _first_per_label(records, snaps, "reconstructions", order)
    if not pairs:
        return None
    first = pairs[0][1]
    images = np.concatenate([first["originals"]] + [s["reconstructions"] for _, s in pairs])
    n = len(first["originals"])
    fig = Figure(figsize=(n * 0.6 + 2.4, (len(pairs) + 1) * 0.62 + 0.9))
    ax = fig.subplots()
    show_grid(ax, images, n, ["original"] + [_title(r) for r, _ in pairs],
              _names(first, first["originals_labels"]))
    ax.set_title("The same test images reconstructed by each configuration", fontsize=9, pad=28)
    return save(fig, path)


def sample_comparison(path: Path, records: list[dict], snaps: dict[str, dict], order: list[str]) -> Path | None:
    """The first row of samples of each configuration that samples."""
    pairs = _first_per_label(records, snaps, "samples", order)
    if not pairs:
        return None
    rows = [s["samples"][::10][:10] if "sample_labels" in s else s["samples"][:10] for _, s in pairs]
    fig = Figure(figsize=(8.4, len(pairs) * 0.62 + 0.8))
    ax = fig.subplots()
    labels = [_title(r) + (", one per class" if "sample_labels" in s else "")
              for r, s in pairs]
    show_grid(ax, np.concatenate(rows), 10, labels)
    ax.set_title("Ten samples of each configuration", fontsize=9)
    return save(fig, path)


def sweeps(board: Board) -> list[tuple[str, str, dict[str, list]]]:
    """(model, swept option, {line name: [rows]}) for every model run at several settings."""
    found = []
    by_model: dict[str, list] = {}
    for row in board.rows:
        by_model.setdefault(row.model, []).append(row)
    for model, rows in by_model.items():
        keys = sorted({k for r in rows for k in r.options})
        varying = [k for k in keys if len({repr(r.options.get(k)) for r in rows}) > 1]
        if len(rows) < 2 or not varying:
            continue
        x = max(varying, key=lambda k: (all(_number(r.options.get(k)) for r in rows),
                                        len({repr(r.options.get(k)) for r in rows})))
        lines: dict[str, list] = {}
        for r in rows:
            rest = ", ".join(f"{k}={r.options.get(k)}" for k in varying if k != x)
            lines.setdefault(rest or model, []).append(r)
        found.append((model, x, lines))
    return found


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def sweep(path: Path, board: Board, model: str, key: str, lines: dict[str, list]) -> Path:
    """Each metric (mean and 95% CI over seeds) against the swept option."""
    metrics = [m for m in board.metrics
               if any(not math.isnan(r.cells[m].summary.mean) for rows in lines.values() for r in rows)]
    cols = min(3, len(metrics)) or 1
    fig = Figure(figsize=(3.4 * cols, 2.7 * math.ceil(len(metrics) / cols)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(math.ceil(len(metrics) / cols), cols)).flatten()
    values = [r.options.get(key) for rows in lines.values() for r in rows]
    numeric = all(_number(v) for v in values)
    categories = list(dict.fromkeys(map(str, values)))
    for ax, metric in zip(axes, metrics):
        for i, (name, rows) in enumerate(lines.items()):
            rows = sorted(rows, key=lambda r: r.options.get(key) if numeric else categories.index(str(r.options.get(key))))
            xs = [r.options.get(key) if numeric else categories.index(str(r.options.get(key))) for r in rows]
            ys = [r.cells[metric].summary.mean for r in rows]
            err = [0 if math.isnan(r.cells[metric].summary.half_width) else r.cells[metric].summary.half_width
                   for r in rows]
            ax.errorbar(xs, ys, yerr=err, fmt="o-", ms=4, lw=1.2, capsize=3, color=f"C{i}",
                        label=plain(name) if len(lines) > 1 else None)
        if numeric and min(values) > 0 and max(values) / min(values) >= 8:
            ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(set(values)) if numeric else range(len(categories)),
                      [str(v) for v in sorted(set(values))] if numeric else categories)
        ax.set_title(header(metric, board.info), fontsize=9)
        ax.set_xlabel(key, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if len(lines) > 1:
            ax.legend(fontsize=7)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    fig.suptitle(f"{model}: metrics against {key} (mean and 95% CI over seeds)", fontsize=10)
    return save(fig, path)
