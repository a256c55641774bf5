"""Figures written next to the numbers: training curves and confusion matrices (PNG)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


@functools.cache
def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, imported when the first figure is drawn (0.4-0.6 s
    that a process which never plots, a killed run or ``predict`` without a timeline, saves);
    the backend is set once, as the import used to, not again at every figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(cm: np.ndarray, labels: Sequence[str], path: Path, *, title: str = "") -> Path:
    """Counts (left) and row-normalised recall (right) side by side."""
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    n = len(labels)
    fig, axes = _pyplot().subplots(1, 2, figsize=(4.2 + 1.1 * n, 0.55 * n + 2.2))
    for ax, data, name, fmt in (
        (axes[0], cm, "counts", "{:.0f}"),
        (axes[1], norm, "row-normalised (recall)", "{:.2f}"),
    ):
        im = ax.imshow(data, cmap="Blues", vmin=0, vmax=max(data.max(), 1e-9))
        ax.set_xticks(range(n), labels, rotation=45, ha="right")
        ax.set_yticks(range(n), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(name)
        thresh = data.max() / 2
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    fmt.format(data[i, j]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if data[i, j] > thresh else "black",
                )
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return _save(fig, path, title)


def plot_curves(history: list[dict[str, Any]], path: Path, *, title: str = "") -> Path:
    """Loss (left) and accuracy/UAR (right) per epoch for training and validation."""
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = _pyplot().subplots(1, 2, figsize=(10, 3.8))
    for key, style in (("train_loss", "-o"), ("val_loss", "-s")):
        ys = [h.get(key) for h in history]
        if any(y is not None for y in ys):
            ax_loss.plot(epochs, ys, style, label=key, markersize=3)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    for key, style in (("train_accuracy", "-o"), ("val_accuracy", "-s"), ("val_uar", "-^")):
        ys = [h.get(key) for h in history]
        if any(y is not None for y in ys):
            ax_acc.plot(epochs, ys, style, label=key, markersize=3)
    best = [h["epoch"] for h in history if h.get("best")]
    if best:
        ax_acc.axvline(best[-1], color="gray", linestyle="--", label=f"selected (epoch {best[-1]})")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylim(0, 1.02)
    ax_acc.legend(loc="lower right")
    ax_acc.grid(alpha=0.3)
    return _save(fig, path, title)


def plot_timeline(
    tracks: Sequence[tuple[str, np.ndarray, np.ndarray]], labels: Sequence[str], path: Path
) -> Path:
    """Class probabilities over time, one panel per recording: ``tracks`` of
    ``(name, window centres in s, probs (windows, classes))``."""
    fig, axes = _pyplot().subplots(
        len(tracks), 1, figsize=(9, 2.6 * len(tracks)), squeeze=False, sharey=True
    )
    for ax, (name, centres, probs) in zip(axes[:, 0], tracks, strict=True):
        for k, label in enumerate(labels):
            ax.plot(centres, probs[:, k], marker="o", ms=3, label=label)
        ax.set_title(name, fontsize=9)
        ax.set_ylim(0, 1)
        ax.set_ylabel("probability")
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("time (s, window centre)")
    axes[0, 0].legend(
        ncol=min(len(labels), 7), fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 1.35)
    )
    return _save(fig, path, "")


def _save(fig: Any, path: Path, title: str) -> Path:
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def _band_ticks(ax: Any, band_hz: np.ndarray, axis: str = "y") -> None:
    """Mel-band axis ticked with the bands' centre frequencies (kHz)."""
    ticks = np.linspace(0, len(band_hz) - 1, 5).round().astype(int)
    labels = [f"{band_hz[t] / 1000:.1f}" for t in ticks]
    if axis == "y":
        ax.set_yticks(ticks + 0.5, labels)
        ax.set_ylabel("mel band (kHz)", fontsize=8)
    else:
        ax.set_xticks(ticks + 0.5, labels)
        ax.set_xlabel("mel band (kHz)", fontsize=8)


def _diverging(values: np.ndarray) -> dict[str, Any]:
    """Colour settings of a signed map: white at 0, symmetric limits at its 99.5th
    percentile of |value| (a few extreme cells would wash the rest out)."""
    limit = float(np.percentile(np.abs(values), 99.5)) or 1e-12
    return {"cmap": "RdBu_r", "vmin": -limit, "vmax": limit}


def plot_attribution(
    wave: np.ndarray,
    sample_rate: int,
    log_mel: np.ndarray,
    attribution: np.ndarray,
    frame_seconds: float,
    band_hz: np.ndarray,
    path: Path,
    *,
    title: str,
) -> Path:
    """One explained recording: its waveform, its log-mel ``(frames, mel)``, and the
    attribution map over time x mel band (red: raises the class's probability, blue: lowers
    it), with its per-band totals beside it and per-frame totals below."""
    fig = _pyplot().figure(figsize=(10, 8.4))
    grid = fig.add_gridspec(4, 2, height_ratios=(0.7, 1.2, 1.2, 0.7), width_ratios=(1, 0.16))
    seconds = len(log_mel) * frame_seconds
    extent = (0, seconds, 0, log_mel.shape[1])
    ax_wave = fig.add_subplot(grid[0, 0])
    ax_wave.plot(np.arange(len(wave)) / sample_rate, wave, lw=0.5, color="0.25")
    ax_wave.set_ylabel("amplitude", fontsize=8)
    ax_wave.set_title("waveform", fontsize=9, loc="left")
    ax_mel = fig.add_subplot(grid[1, 0], sharex=ax_wave)
    im = ax_mel.imshow(log_mel.T, origin="lower", aspect="auto", cmap="magma", extent=extent)
    ax_mel.set_title("log-mel (ln energy)", fontsize=9, loc="left")
    holder = fig.add_subplot(grid[1, 1])
    holder.axis("off")
    fig.colorbar(im, cax=holder.inset_axes((0.0, 0.0, 0.12, 1.0)))
    ax_att = fig.add_subplot(grid[2, 0], sharex=ax_wave)
    im = ax_att.imshow(
        attribution.T, origin="lower", aspect="auto", extent=extent, **_diverging(attribution)
    )
    ax_att.set_title("attribution (integrated gradients)", fontsize=9, loc="left")
    ax_bands = fig.add_subplot(grid[2, 1], sharey=ax_att)
    totals = attribution.sum(axis=0)
    ax_bands.barh(np.arange(len(totals)) + 0.5, totals, height=1.0, color=_signs(totals))
    ax_bands.axvline(0, color="0.4", lw=0.6)
    ax_bands.set_title("per band", fontsize=8)
    ax_bands.set_xlabel("sum", fontsize=7)
    ax_bands.locator_params(axis="x", nbins=2)
    ax_bands.tick_params(labelsize=7, labelleft=False)
    ax_frames = fig.add_subplot(grid[3, 0], sharex=ax_wave)
    frames = attribution.sum(axis=1)
    centres = (np.arange(len(frames)) + 0.5) * frame_seconds
    ax_frames.bar(centres, frames, width=frame_seconds, color=_signs(frames))
    ax_frames.axhline(0, color="0.4", lw=0.6)
    ax_frames.set_ylabel("per frame", fontsize=8)
    ax_frames.set_xlabel("time (s)")
    ax_frames.set_xlim(0, seconds)
    for ax in (ax_mel, ax_att):
        _band_ticks(ax, band_hz)
    for ax in (ax_wave, ax_mel, ax_att, ax_frames):
        ax.tick_params(labelsize=7)
    fig.add_subplot(grid[0, 1]).axis("off")
    fig.add_subplot(grid[3, 1]).axis("off")
    fig.colorbar(im, ax=ax_bands, location="right", fraction=0.5, pad=0.08)
    return _save(fig, path, title)


def _signs(values: np.ndarray) -> list[str]:
    return ["#c0392b" if v >= 0 else "#2e6db4" for v in values]


def plot_class_attributions(
    panels: Sequence[tuple[str, int, np.ndarray]],
    band_hz: np.ndarray,
    path: Path,
    *,
    title: str,
) -> Path:
    """The mean attribution map of each class over utterance position x mel band: ``panels``
    of ``(class, files, mean map (positions, mel))``, one panel a class, each with the mean
    per-position totals above it and per-band totals beside it; one colour scale for all."""
    cols = 4
    rows = -(-len(panels) // cols)
    fig = _pyplot().figure(figsize=(3.4 * cols, 3.3 * rows))
    outer = fig.add_gridspec(rows, cols, wspace=0.35, hspace=0.45)
    colours = _diverging(np.concatenate([m.ravel() for _, _, m in panels]))
    band_max = max(np.abs(m.sum(axis=0)).max() for _, _, m in panels) * 1.05
    pos_max = max(np.abs(m.sum(axis=1)).max() for _, _, m in panels) * 1.05
    im = None
    for k, (name, files, mean_map) in enumerate(panels):
        cell = outer[k // cols, k % cols].subgridspec(
            2, 2, height_ratios=(0.3, 1), width_ratios=(1, 0.3), hspace=0.05, wspace=0.15
        )
        ax = fig.add_subplot(cell[1, 0])
        im = ax.imshow(
            mean_map.T,
            origin="lower",
            aspect="auto",
            extent=(0, 1, 0, mean_map.shape[1]),
            **colours,
        )
        _band_ticks(ax, band_hz)
        ax.set_xticks((0, 0.5, 1), ("0", "0.5", "1"))
        ax.set_xlabel("utterance position", fontsize=8)
        ax.tick_params(labelsize=7)
        top = fig.add_subplot(cell[0, 0], sharex=ax)
        positions = mean_map.sum(axis=1)
        top.bar(
            (np.arange(len(positions)) + 0.5) / len(positions),
            positions,
            width=1 / len(positions),
            color=_signs(positions),
        )
        top.set_ylim(-pos_max, pos_max)
        top.axhline(0, color="0.4", lw=0.6)
        top.set_title(f"{name} ({files} files)", fontsize=9)
        top.tick_params(labelsize=6, labelbottom=False)
        side = fig.add_subplot(cell[1, 1], sharey=ax)
        bands = mean_map.sum(axis=0)
        side.barh(np.arange(len(bands)) + 0.5, bands, height=1.0, color=_signs(bands))
        side.set_xlim(-band_max, band_max)
        side.axvline(0, color="0.4", lw=0.6)
        side.tick_params(labelsize=6, labelleft=False, labelrotation=90)
        side.locator_params(axis="x", nbins=2)
    if im is not None and len(panels) < rows * cols:  # the empty cell holds the key
        key = fig.add_subplot(outer[rows - 1, cols - 1])
        key.axis("off")
        fig.colorbar(im, cax=key.inset_axes((0.05, 0.1, 0.08, 0.85)))
        key.text(
            0.45,
            0.5,
            "mean attribution per cell:\nred raises the class's\nprobability, blue lowers it\n\n"
            "above: sum per position\nbeside: sum per band\n(one scale for all classes)",
            fontsize=8,
            va="center",
        )
    elif im is not None:
        fig.colorbar(im, ax=fig.axes, shrink=0.6, label="mean attribution per cell")
    fig.suptitle(title, fontsize=10)
    path = Path(path)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path
