"""Corpus exploration: what is in the data before any model sees it.

:func:`explore` takes the loaded corpus (utterances and their waveforms at one sample rate)
and writes into ``out_dir``:

* ``label_histogram.png``: files per label, and a speaker × label count grid;
* ``examples.png``: a few random files, waveform (titled with the label) and log-mel
  spectrogram (librosa; this is host-side exploration, not the training front-end);
* ``summary.json`` and ``summary.md``: files per label, speaker and speaker × label,
  durations and levels after loading, and what the files themselves declare (native sample
  rates, channels, formats, durations; read with ``soundfile.info``).
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import soundfile as sf
from matplotlib.figure import Figure

from ser_jax.data.manifest import Utterance, label_names
from ser_jax.data.prepare import load_all


def _stats(values: Sequence[float], digits: int = 3) -> dict[str, float]:
    if not len(values):
        return {}
    v = np.asarray(values, dtype=np.float64)
    return {
        "min": round(float(v.min()), digits),
        "mean": round(float(v.mean()), digits),
        "max": round(float(v.max()), digits),
    }


def _native_info(utts: Sequence[Utterance]) -> dict[str, Any]:
    rates: Counter[str] = Counter()
    channels: Counter[str] = Counter()
    formats: Counter[str] = Counter()
    durations = []
    unreadable = 0
    for u in utts:
        try:
            info = sf.info(u.path)
        except (sf.LibsndfileError, OSError, RuntimeError):
            unreadable += 1  # e.g. a tfds: path; not an error for exploration
            continue
        rates[str(info.samplerate)] += 1
        channels[str(info.channels)] += 1
        formats[f"{info.format}/{info.subtype}"] += 1
        durations.append(info.frames / info.samplerate)
    return {
        "sample_rates": dict(sorted(rates.items(), key=lambda kv: int(kv[0]))),
        "channels": dict(sorted(channels.items())),
        "formats": dict(sorted(formats.items())),
        "duration_s": _stats(durations),
        "files_without_info": unreadable,
    }


def corpus_summary(
    utts: Sequence[Utterance], waves: Sequence[np.ndarray], sample_rate: int
) -> dict[str, Any]:
    """Counts, durations, levels and native formats as a JSON-ready dict."""
    names = label_names(utts)
    speakers = sorted({u.speaker for u in utts})
    per_label = Counter(u.label for u in utts)
    per_speaker = Counter(u.speaker for u in utts)
    grid = Counter((u.speaker, u.label) for u in utts)
    durations = [len(w) / sample_rate for w in waves]
    rms_db = [
        20 * np.log10(np.sqrt(np.mean(np.square(w, dtype=np.float64))) + 1e-12) for w in waves
    ]
    peaks = [float(np.max(np.abs(w))) if len(w) else 0.0 for w in waves]
    return {
        "files": len(utts),
        "labels": list(names),
        "speakers": speakers,
        "per_label": {n: per_label[n] for n in names},
        "per_speaker": {s: per_speaker[s] for s in speakers},
        "per_speaker_label": {s: {n: grid[s, n] for n in names} for s in speakers},
        "sample_rate": sample_rate,
        "duration_s": {**_stats(durations), "total": round(float(sum(durations)), 1)},
        "distinct_lengths": len({len(w) for w in waves}),
        "rms_dbfs": _stats(rms_db, 1),
        "files_peak_at_least_0.999": int(sum(p >= 0.999 for p in peaks)),
        "native": _native_info(utts),
    }


def _markdown(summary: dict[str, Any]) -> str:
    names, speakers = summary["labels"], summary["speakers"]
    lines = [
        "# Corpus summary",
        "",
        f"{summary['files']} files, {len(names)} labels, {len(speakers)} speakers.",
        "",
        "## Files per label",
        "",
        "| label | files |",
        "|---|---|",
        *[f"| {n} | {summary['per_label'][n]} |" for n in names],
        "",
        "## Files per speaker × label",
        "",
        "| speaker | " + " | ".join(names) + " | total |",
        "|---" * (len(names) + 2) + "|",
    ]
    for s in speakers:
        row = summary["per_speaker_label"][s]
        lines.append(
            f"| {s} | "
            + " | ".join(str(row[n]) for n in names)
            + f" | {summary['per_speaker'][s]} |"
        )
    d, nat = summary["duration_s"], summary["native"]
    nd = nat["duration_s"]
    lines += [
        "| total | "
        + " | ".join(str(summary["per_label"][n]) for n in names)
        + f" | {summary['files']} |",
        "",
        "## Audio",
        "",
        f"- After loading ({summary['sample_rate']} Hz mono): duration min {d.get('min')} s, "
        f"mean {d.get('mean')} s, max {d.get('max')} s, total {d.get('total')} s; "
        f"{summary['distinct_lengths']} distinct lengths.",
        f"- RMS level (dBFS): {summary['rms_dbfs']}; files with peak ≥ 0.999 (clipped or "
        "peak-normalised): "
        f"{summary['files_peak_at_least_0.999']}.",
        f"- Native sample rates (files): {nat['sample_rates']}.",
        f"- Native channels (files): {nat['channels']}; formats: {nat['formats']}.",
        f"- Native duration: min {nd.get('min')} s, mean {nd.get('mean')} s, max {nd.get('max')} s"
        + (
            f"; {nat['files_without_info']} files without file info"
            if nat["files_without_info"]
            else ""
        )
        + ".",
        "",
    ]
    return "\n".join(lines)


def _plot_counts(summary: dict[str, Any], path: Path) -> None:
    names, speakers = summary["labels"], summary["speakers"]
    counts = [summary["per_label"][n] for n in names]
    grid = np.array([[summary["per_speaker_label"][s][n] for n in names] for s in speakers])
    fig = Figure(figsize=(6 + 0.9 * len(names), 4 + 0.1 * len(speakers)), layout="constrained")
    ax_bar, ax_grid = fig.subplots(1, 2, width_ratios=(1, 1.1))
    bars = ax_bar.bar(range(len(names)), counts, color="tab:blue")
    ax_bar.bar_label(bars, padding=2)
    ax_bar.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax_bar.set_ylabel("files")
    ax_bar.set_ylim(0, max(counts) * 1.12)
    ax_bar.set_title(f"files per label ({summary['files']} files)")
    im = ax_grid.imshow(grid, cmap="Blues", aspect="auto", vmin=0)
    ax_grid.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax_grid.set_yticks(range(len(speakers)), speakers)
    ax_grid.set_ylabel("speaker")
    ax_grid.set_title("files per speaker × label")
    high = grid.max() / 2 if grid.size else 0
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            ax_grid.text(
                j,
                i,
                str(grid[i, j]),
                ha="center",
                va="center",
                color="white" if grid[i, j] > high else "black",
                fontsize=8,
            )
    fig.colorbar(im, ax=ax_grid, shrink=0.8, label="files")
    fig.savefig(path, dpi=110)


def _plot_examples(
    utts: Sequence[Utterance],
    waves: Sequence[np.ndarray],
    sample_rate: int,
    indices: Sequence[int],
    path: Path,
) -> None:
    n_fft = 1 << int(np.ceil(np.log2(0.025 * sample_rate)))  # 25 ms window, power of two
    hop = int(round(0.010 * sample_rate))
    n_mels = 64
    fig = Figure(figsize=(12, 2.3 * len(indices) + 0.4), layout="constrained")
    axes = fig.subplots(len(indices), 2, squeeze=False, width_ratios=(1, 1.25))
    for row, i in enumerate(indices):
        u, w = utts[i], waves[i]
        seconds = len(w) / sample_rate
        ax_w, ax_s = axes[row]
        ax_w.plot(np.arange(len(w)) / sample_rate, w, lw=0.4, color="tab:blue")
        ax_w.set_xlim(0, seconds)
        ax_w.set_ylim(-1.05, 1.05)
        ax_w.set_title(f"{u.label}: {u.utt_id} (speaker {u.speaker}, {seconds:.2f} s)", fontsize=10)
        ax_w.set_ylabel("amplitude")
        mel = librosa.feature.melspectrogram(
            y=w,
            sr=sample_rate,
            n_fft=n_fft,
            win_length=int(0.025 * sample_rate),
            hop_length=hop,
            n_mels=n_mels,
            fmax=sample_rate / 2,
        )
        db = librosa.power_to_db(mel, ref=np.max, top_db=80.0)
        im = ax_s.imshow(
            db,
            origin="lower",
            aspect="auto",
            cmap="magma",
            extent=(0, seconds, 0, n_mels),
            vmin=-80,
            vmax=0,
        )
        ax_s.set_title(f"log-mel ({n_mels} bands, hop {hop}), {u.label}", fontsize=10)
        ax_s.set_ylabel("mel band")
        fig.colorbar(im, ax=ax_s, label="dB re max", pad=0.01)
        if row == len(indices) - 1:
            ax_w.set_xlabel("time (s)")
            ax_s.set_xlabel("time (s)")
    fig.savefig(path, dpi=100)


def explore(
    utts: Sequence[Utterance],
    waves: Sequence[np.ndarray],
    sample_rate: int,
    out_dir: str | os.PathLike,
    *,
    n_examples: int = 4,
    seed: int = 0,
) -> dict[str, Any]:
    """Write the exploration figures and summaries to ``out_dir``; returns the summary.

    ``waves[i]`` is the loaded float waveform ``(samples,)`` of ``utts[i]`` at
    ``sample_rate``. The returned dict is ``summary.json``'s content plus ``"outputs"``
    (file name → path) and ``"examples"`` (the utt_ids plotted, drawn with ``seed``).
    """
    if len(utts) != len(waves):
        raise ValueError(f"{len(utts)} utterances but {len(waves)} waveforms")
    if not utts:
        raise ValueError("nothing to explore: no utterances")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = corpus_summary(utts, waves, sample_rate)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(utts), size=min(n_examples, len(utts)), replace=False)
    summary["examples"] = [utts[i].utt_id for i in chosen]
    outputs = {
        "label_histogram.png": out / "label_histogram.png",
        "examples.png": out / "examples.png",
        "summary.json": out / "summary.json",
        "summary.md": out / "summary.md",
    }
    _plot_counts(summary, outputs["label_histogram.png"])
    if len(chosen):
        _plot_examples(utts, waves, sample_rate, [int(i) for i in chosen], outputs["examples.png"])
    outputs["summary.json"].write_text(json.dumps(summary, indent=2) + "\n")
    outputs["summary.md"].write_text(_markdown(summary))
    return {**summary, "outputs": {k: str(v) for k, v in outputs.items()}}


def explore_command(
    config: Any, *, data: str | None, corpus: str, out: str | None
) -> dict[str, Any]:
    """``ser-jax explore``: the config's corpus, or the one at ``data`` read as ``corpus``."""
    cfg = config.copy_and_resolve_references()
    if data:
        with cfg.unlocked():
            cfg.data.corpus, cfg.data.root = corpus, data
    waves, utts, skipped = load_all(cfg.data)
    for s in skipped:
        print(f"skipped {s.path}: {s.reason}", file=sys.stderr)
    out_dir = Path(out or "runs/explore")
    summary = explore(utts, waves, int(cfg.data.sample_rate), out_dir)
    print(f"wrote {out_dir}/label_histogram.png, examples.png, summary.json, summary.md")
    return summary
