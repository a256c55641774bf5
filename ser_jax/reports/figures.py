"""Figures written next to the numbers: training curves and confusion matrices (PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_confusion(cm: np.ndarray, labels: Sequence[str], path: Path, *, title: str = "") -> Path:
    """Counts (left) and row-normalised recall (right) side by side."""
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    n = len(labels)
    fig, axes = plt.subplots(1, 2, figsize=(4.2 + 1.1 * n, 0.55 * n + 2.2))
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
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
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
    fig, axes = plt.subplots(
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
    plt.close(fig)
    return path
