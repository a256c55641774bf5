"""One utterance, clean and under each augmentation alone: a figure to check the transforms.

Rows: clean, time shift, noise, gain, pitch shift, speed, SpecAugment, each drawn with
probability 1 from the ranges of the given :class:`AugmentConfig` (defaults when None), with
the drawn values in the titles. Each row shows the strongest of a few seeded draws (a draw
near "no change" would show nothing). Columns: the waveform (the clean one in grey behind it) and the
log-mel on one colour scale. The log-mel is shown before utterance normalisation, so that a gain
is visible (normalisation removes it); SpecAugment's masked cells (0 = the band mean after
normalisation) are drawn blank.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from matplotlib.figure import Figure

from ser_jax.data.audio import load_audio
from ser_jax.errors import ConfigError
from ser_jax.frontend.augment import (
    PROBABILITY_FIELDS,
    AugmentConfig,
    apply_waveform,
    draw_spec_masks,
    draw_waveform_params,
)
from ser_jax.frontend.logmel import FrontendConfig, log_mel, num_frames
from ser_jax.spec import resolve

_ROWS = (
    ("clean", {}),
    ("time shift", {"time_shift_prob": 1.0}),
    ("noise", {"noise_prob": 1.0}),
    ("gain", {"gain_prob": 1.0}),
    ("pitch shift", {"pitch_shift_prob": 1.0}),
    ("speed", {"speed_prob": 1.0}),
    ("SpecAugment", {"time_mask_prob": 1.0, "freq_mask_prob": 1.0}),
)


_CANDIDATES = 8  # each row shows the strongest of this many draws (a tiny draw shows nothing)


def _strongest(
    name: str, keys: jax.Array, cfg: AugmentConfig, sr: int, n_mels: int, frames: int
) -> int:
    """Index of the key whose draw changes the clip most for this row's transform."""
    p = jax.tree.map(
        np.asarray,
        {k: v for k, v in draw_waveform_params(keys, cfg, sr).items() if k != "noise_key"},
    )
    effect = {
        "time shift": np.abs(p["shift"]),
        "noise": -p["snr_db"],
        "gain": np.abs(p["gain_db"]),
        "pitch shift": np.abs(p["semitones"]),
        "speed": np.abs(np.log(p["speed"])),
    }.get(name)
    if name == "SpecAugment":
        flen = jnp.full((keys.shape[0],), frames, jnp.int32)
        m = draw_spec_masks(keys, flen, n_mels, cfg)
        effect = np.asarray(m["time_width"].sum(1) + m["freq_width"].sum(1))
    return 0 if effect is None else int(np.argmax(effect))


def _title(
    name: str, p: dict[str, np.ndarray], masks: dict[str, np.ndarray] | None, sr: int
) -> str:
    if name == "time shift":
        k = int(p["shift"][0])
        return f"time shift {k:+d} samples ({k / sr:+.3f} s)"
    if name == "noise":
        color = "pink" if bool(p["pink"][0]) else "white"
        return f"{color} noise, SNR {float(p['snr_db'][0]):.1f} dB"
    if name == "gain":
        return f"gain {float(p['gain_db'][0]):+.1f} dB"
    if name == "pitch shift":
        return (
            f"pitch {float(p['semitones'][0]):+.2f} semitones "
            f"(mel filters warped x{float(p['warp'][0]):.3f})"
        )
    if name == "speed":
        return f"speed x{float(p['speed'][0]):.3f}"
    if name == "SpecAugment" and masks is not None:
        t = [
            (int(s), int(w))
            for s, w in zip(masks["time_start"][0], masks["time_width"][0], strict=True)
        ]
        f = [
            (int(s), int(w))
            for s, w in zip(masks["freq_start"][0], masks["freq_width"][0], strict=True)
        ]
        return f"SpecAugment: time (start, width) {t}, mel {f}"
    return "clean"


def _draw_rows(
    y: np.ndarray, frontend: FrontendConfig, base: AugmentConfig, seed: int
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(title, waveform, log-mel with masked cells NaN)`` of each row of ``_ROWS``."""
    sr = frontend.sample_rate
    audio = jnp.asarray(y[None])
    lengths = jnp.asarray([len(y)], jnp.int32)
    show = dataclasses.replace(frontend, normalize="none", clip_channel=False)
    mel = jax.jit(log_mel, static_argnums=2)
    key = jax.random.key(seed)
    frames = num_frames(len(y), frontend)
    rows = []
    for r, (name, probs) in enumerate(_ROWS):
        cfg = dataclasses.replace(base, **probs)
        candidates = jax.random.split(jax.random.fold_in(key, r), _CANDIDATES)
        k = candidates[_strongest(name, candidates, cfg, sr, frontend.n_bands, frames)][None]
        p = draw_waveform_params(k, cfg, sr)
        wave, new_len, warp = apply_waveform(p, audio, lengths, cfg)
        feats, flen = mel(wave, new_len, show, warp if cfg.pitch_shift_prob > 0 else None)
        feats = np.array(feats[0, : int(flen[0])])
        masks = None
        if cfg.spec_enabled:
            masks = jax.tree.map(np.asarray, draw_spec_masks(k, flen, frontend.n_bands, cfg))
            t, f = np.arange(feats.shape[0]), np.arange(feats.shape[1])
            for s, w in zip(masks["time_start"][0], masks["time_width"][0], strict=True):
                feats[(t >= s) & (t < s + w), :] = np.nan
            for s, w in zip(masks["freq_start"][0], masks["freq_width"][0], strict=True):
                feats[:, (f >= s) & (f < s + w)] = np.nan
        wave = np.asarray(wave[0, : int(new_len[0])])
        p = jax.tree.map(np.asarray, {k_: v for k_, v in p.items() if k_ != "noise_key"})
        rows.append((_title(name, p, masks, sr), wave, feats))
    return rows


def _plot_rows(
    fig: Figure, rows: list[tuple[str, np.ndarray, np.ndarray]], frontend: FrontendConfig
) -> None:
    """Waveforms (the clean one in grey behind) left, log-mels on one colour scale right."""
    sr = frontend.sample_rate
    vmax = max(np.nanmax(f) for _, _, f in rows)
    vmin = float(np.percentile(rows[0][2], 1))
    peak = max(np.abs(w).max() for _, w, _ in rows) * 1.05
    duration = max(len(w) for _, w, _ in rows) / sr
    hop_s = frontend.hop_length / sr
    cmap = matplotlib.colormaps["magma"].copy()
    cmap.set_bad("white")
    axes = fig.subplots(len(rows), 2, squeeze=False, width_ratios=(1, 1.2))
    clean_wave = rows[0][1]
    for i, (title, wave, feats) in enumerate(rows):
        ax = axes[i, 0]
        if i > 0:
            ax.plot(np.arange(len(clean_wave)) / sr, clean_wave, color="0.75", lw=0.5)
        ax.plot(np.arange(len(wave)) / sr, wave, color="C0", lw=0.5)
        ax.set_ylim(-peak, peak)
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_ylabel("amplitude", fontsize=8)
        ax = axes[i, 1]
        ax.set_facecolor("0.85")  # beyond the (speed-shortened) clip; masked cells are white
        im = ax.imshow(
            feats.T,
            origin="lower",
            aspect="auto",
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
            extent=(0, feats.shape[0] * hop_s, 0, feats.shape[1]),
            interpolation="nearest",
        )
        ax.set_ylabel("mel band", fontsize=8)
        ax.set_title(f"log-mel ({feats.shape[0]} frames)", fontsize=9, loc="left")
        for a in axes[i]:
            a.set_xlim(0, duration)
            a.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("time (s)", fontsize=8)
    axes[-1, 1].set_xlabel("time (s)", fontsize=8)
    fig.colorbar(im, ax=axes[:, 1], shrink=0.5, aspect=30, label=f"{frontend.log} mel energy")


def write_augmentation_figure(
    wav_path: str | os.PathLike,
    out_png: str | os.PathLike,
    frontend: FrontendConfig,
    augment: AugmentConfig | None = None,
    seed: int = 0,
) -> Path:
    """Write one PNG: ``wav_path`` clean and under each augmentation alone. Returns the path."""
    base = augment or AugmentConfig()
    base = dataclasses.replace(base, **{name: 0.0 for name in PROBABILITY_FIELDS})
    y = load_audio(Path(wav_path), frontend.sample_rate)
    rows = _draw_rows(y, frontend, base, seed)
    fig = Figure(figsize=(13, 1.9 * len(rows)), layout="constrained")
    _plot_rows(fig, rows, frontend)
    fig.suptitle(
        f"{Path(wav_path).name}: each augmentation alone, the strongest of {_CANDIDATES} draws "
        f"(seed {seed}); log-mel before utterance normalisation, masked cells white",
        fontsize=10,
    )
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out


def augment_figure_command(config: Any, *, wav: str | None, out: str | None) -> Path:
    """``ser-jax augment-figure``: the figure for ``wav`` with the config's settings."""
    if not wav:
        raise ConfigError("augment-figure needs --wav FILE")
    spec = resolve(config)
    path = write_augmentation_figure(
        wav, Path(out or "runs/augmentations.png"), spec.frontend, spec.augment
    )
    print(f"wrote {path}")
    return path
