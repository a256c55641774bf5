"""Training: ``create_train_state``, a pure jit-compiled ``train_step`` and ``eval_step``, and
``train_and_evaluate(config, workdir)``, which owns the loop, logging, checkpoints and reports.

One train step runs, on device and inside one ``jax.jit``: waveform augmentation → log-mel →
SpecAugment → CNN-LSTM → cross-entropy → optax update. The RNG of step *k* is
``fold_in(key(seed), k)``, and each example's augmentation key is ``fold_in(aug_key, aug_id)``,
so a run is a pure function of its config and seed (on CPU: identical metrics run to run), and a
run resumed from a checkpoint continues exactly as the uninterrupted one.

A run directory holds: ``config.json`` (the resolved config), ``run_info.json`` (git commit,
library versions, devices, label map, data summary), ``metrics.jsonl`` (per log interval and per
epoch), ``tb/`` (TensorBoard events), ``checkpoints/`` (orbax), ``curves.png``,
``test_metrics.json`` + ``test_confusion.png`` + ``test_predictions.jsonl``, and
``results.json`` (the headline numbers).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax.training import train_state

from ser_jax import parallel
from ser_jax.augment import AugmentConfig
from ser_jax.checkpoint import Checkpointer
from ser_jax.data.pipeline import ClipSet, TrainBatches, eval_batches
from ser_jax.data.prepare import PreparedData, prepare
from ser_jax.errors import ConfigError, SerJaxError
from ser_jax.evaluate import classification_metrics, format_table, write_report
from ser_jax.features import make_features
from ser_jax.frontend import FrontendConfig, log_mel, num_frames
from ser_jax.models import check_min_frames, create_model

log = logging.getLogger(__name__)

AUGMENT_LOOP_KEYS = ("mode", "copies")  # augment settings the loop reads, not AugmentConfig


class TrainState(train_state.TrainState):
    batch_stats: Any
    # Training-set log-mel mean/std (n_mels,) for frontend.normalize="dataset"; saved with the
    # checkpoint so a restored model normalises exactly as in training. (0, 1) otherwise.
    feature_stats: Any = None


class NonFiniteLossError(SerJaxError):
    """The training loss became NaN or infinite; names the step."""


# ----------------------------------------------------------------------------------------------
# Config → static objects
# ----------------------------------------------------------------------------------------------


def frontend_config(config: Any) -> FrontendConfig:
    fields = dict(config.frontend)
    fields["sample_rate"] = int(config.data.sample_rate)
    return FrontendConfig.from_config(fields)


def augment_config(config: Any) -> AugmentConfig:
    fields = {k: v for k, v in dict(config.augment).items() if k not in AUGMENT_LOOP_KEYS}
    return AugmentConfig.from_config(fields)


def make_schedule(tcfg: Any, steps_per_epoch: int) -> optax.Schedule:
    lr = float(tcfg.learning_rate)
    total = max(1, int(tcfg.epochs) * steps_per_epoch)
    kind = str(tcfg.schedule)
    if kind == "constant":
        return optax.constant_schedule(lr)
    if kind == "piecewise":  # MATLAB LearnRateSchedule="piecewise"
        period = max(1, int(round(float(tcfg.drop_period) * steps_per_epoch)))
        return optax.exponential_decay(
            lr, transition_steps=period, decay_rate=float(tcfg.drop_factor), staircase=True
        )
    if kind == "cosine":
        warmup = int(round(float(tcfg.warmup_epochs) * steps_per_epoch))
        return optax.warmup_cosine_decay_schedule(
            0.0 if warmup else lr, lr, warmup, max(total, warmup + 1), end_value=lr * 0.01
        )
    raise ConfigError(f"train.schedule={kind!r}; choose constant, piecewise or cosine")


def _kernel_mask(params: Any) -> Any:
    """Decay conv/dense/LSTM kernels only, not biases or BatchNorm scales."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(tcfg: Any, steps_per_epoch: int) -> optax.GradientTransformation:
    schedule = make_schedule(tcfg, steps_per_epoch)
    wd = float(tcfg.weight_decay)
    parts = []
    if float(tcfg.grad_clip) > 0:
        parts.append(optax.clip_by_global_norm(float(tcfg.grad_clip)))
    name = str(tcfg.optimizer)
    if name == "adamw":
        parts.append(optax.adamw(schedule, weight_decay=wd, mask=_kernel_mask))
    elif name in ("adam", "sgd"):
        if wd > 0:  # L2 regularisation (MATLAB's L2Regularization): added to the gradient
            parts.append(optax.add_decayed_weights(wd, mask=_kernel_mask))
        parts.append(optax.adam(schedule) if name == "adam" else optax.sgd(schedule, momentum=0.9))
    else:
        raise ConfigError(f"train.optimizer={name!r}; choose adam, adamw or sgd")
    return optax.chain(*parts)


def create_train_state(
    model: nn.Module, tx: optax.GradientTransformation, seed: int, n_mels: int
) -> TrainState:
    feats = jnp.zeros((2, 32, n_mels), jnp.float32)
    lengths = jnp.array([32, 20], jnp.int32)
    # One compiled init instead of ~100 eagerly compiled ops (~4 s of startup); same values.
    init = jax.jit(functools.partial(model.init, train=False))
    variables = init(jax.random.key(seed), feats, lengths)
    return TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        tx=tx,
        batch_stats=variables.get("batch_stats", {}),
        feature_stats={
            "mean": jnp.zeros((n_mels,), jnp.float32),
            "std": jnp.ones((n_mels,), jnp.float32),
        },
    )


def dataset_feature_stats(
    clips: ClipSet,
    frontend: FrontendConfig,
    *,
    batch_size: int,
    max_samples: int,
    bucket_samples: int,
) -> dict[str, np.ndarray]:
    """Mean and std per mel band of the clean log-mel over every valid frame of ``clips``."""
    raw = dataclasses.replace(frontend, normalize="none")
    fn = jax.jit(lambda a, n: log_mel(a, n, raw))
    total = np.zeros(frontend.n_mels)
    total_sq = np.zeros(frontend.n_mels)
    count = 0
    for batch in eval_batches(
        clips, batch_size, max_samples=max_samples, bucket_samples=bucket_samples
    ):
        feats, flen = fn(batch["audio"], batch["length"])
        feats, flen = np.asarray(feats, np.float64), np.asarray(flen)
        valid = (np.arange(feats.shape[1])[None, :] < flen[:, None]) & (
            batch["weight"][:, None] > 0
        )
        total += feats[valid].sum(axis=0)
        total_sq += np.square(feats[valid]).sum(axis=0)
        count += int(valid.sum())
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(total_sq / max(count, 1) - mean**2, 0.0) + 1e-5)
    return {"mean": mean.astype(np.float32), "std": std.astype(np.float32)}


# ----------------------------------------------------------------------------------------------
# Pure steps
# ----------------------------------------------------------------------------------------------


def cross_entropy(
    logits: jax.Array,
    labels: jax.Array,
    weights: jax.Array,
    class_weights: jax.Array,
    label_smoothing: float,
) -> tuple[jax.Array, jax.Array]:
    """Weighted mean cross-entropy and the per-example loss (zero where weight is 0)."""
    num_classes = logits.shape[-1]
    targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
    per_example = optax.softmax_cross_entropy(logits, targets)
    w = weights * class_weights[labels]
    per_example = jnp.where(weights > 0, per_example, 0.0)
    return (per_example * w).sum() / jnp.maximum(w.sum(), 1e-9), per_example


def train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    class_weights: jax.Array,
    *,
    frontend: FrontendConfig,
    augment: AugmentConfig | None,
    offline: bool,
    seed: int,
    label_smoothing: float,
) -> tuple[TrainState, dict[str, jax.Array]]:
    step_key = jax.random.fold_in(jax.random.key(seed), state.step)
    feats, frames = _features(batch, frontend, augment, offline, seed, state.feature_stats)

    def loss_fn(params):
        logits, updates = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats},
            feats,
            frames,
            train=True,
            rngs={"dropout": jax.random.fold_in(step_key, 1)},
            mutable=["batch_stats"],
        )
        loss, _ = cross_entropy(
            logits, batch["label"], batch["weight"], class_weights, label_smoothing
        )
        return loss, (logits, updates)

    (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, batch_stats=updates["batch_stats"])
    correct = (jnp.argmax(logits, -1) == batch["label"]) * batch["weight"]
    metrics = {"loss": loss, "correct": correct.sum(), "count": batch["weight"].sum()}
    return state, metrics


def _features(batch, frontend, augment, offline, seed, feature_stats):
    stats = (feature_stats["mean"], feature_stats["std"])
    if augment is None or not augment.enabled:
        return make_features(
            batch["audio"], batch["length"], None, frontend=frontend, augment=None, stats=stats
        )
    aug_key = jax.random.fold_in(jax.random.key(seed), 0x5EED)
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(aug_key, batch["aug_id"])
    feats, frames = make_features(
        batch["audio"], batch["length"], keys, frontend=frontend, augment=augment, stats=stats
    )
    if offline:  # the original copy of each file stays clean
        clean, clean_frames = make_features(
            batch["audio"], batch["length"], None, frontend=frontend, augment=None, stats=stats
        )
        keep = batch["augment"]
        frames_max = max(feats.shape[1], clean.shape[1])
        feats = jnp.where(
            keep[:, None, None], _pad_time(feats, frames_max), _pad_time(clean, frames_max)
        )
        frames = jnp.where(keep, frames, clean_frames)
    return feats, frames


def _pad_time(x: jax.Array, frames: int) -> jax.Array:
    return jnp.pad(x, ((0, 0), (0, frames - x.shape[1]), (0, 0)))


def eval_step(
    state: TrainState, batch: dict[str, jax.Array], *, frontend: FrontendConfig
) -> tuple[jax.Array, jax.Array]:
    """Class probabilities (batch, classes) of clean audio, and the rows' clip indices."""
    stats = (state.feature_stats["mean"], state.feature_stats["std"])
    feats, frames = make_features(
        batch["audio"], batch["length"], None, frontend=frontend, augment=None, stats=stats
    )
    logits = state.apply_fn(
        {"params": state.params, "batch_stats": state.batch_stats}, feats, frames, train=False
    )
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1), batch["index"]


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Trainer:
    """Compiled steps and the pieces around them for one config (used by the loop and tests)."""

    config: Any
    data: PreparedData
    mesh: Any
    model: nn.Module
    frontend: FrontendConfig
    augment: AugmentConfig
    batches: TrainBatches
    state: TrainState
    class_weights: jax.Array
    train_step: Any
    eval_step: Any
    schedule: optax.Schedule  # the learning rate by step, for logging
    max_samples: int
    bucket_samples: int

    @property
    def steps_per_epoch(self) -> int:
        return self.batches.steps_per_epoch

    def predict(self, clips: ClipSet, state: TrainState | None = None) -> np.ndarray:
        """Probabilities (len(clips), classes) on clean audio, one eval pass over ``clips``."""
        state = state if state is not None else self.state
        probs = np.zeros((len(clips), len(self.data.label_names)), np.float32)
        for batch in eval_batches(
            clips,
            int(self.config.train.batch_size),
            max_samples=self.max_samples,
            bucket_samples=self.bucket_samples,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
        ):
            p, idx = self.eval_step(state, parallel.to_global(batch, self.mesh))
            p, idx = np.asarray(p), np.asarray(idx)
            probs[idx[idx >= 0]] = p[idx >= 0]
        return probs

    def evaluate(self, clips: ClipSet, state: TrainState | None = None) -> dict[str, Any]:
        probs = self.predict(clips, state)
        metrics = classification_metrics(clips.labels, probs.argmax(-1), self.data.label_names)
        eps = 1e-12
        nll = -np.log(probs[np.arange(len(clips)), clips.labels] + eps)
        metrics["loss"] = float(nll.mean())
        metrics["probs"] = probs
        return metrics


def build_trainer(config: Any, data: PreparedData | None = None) -> Trainer:
    """Everything a run needs, compiled lazily: data, mesh, model, state, jitted steps."""
    data = data if data is not None else prepare(config, progress=bool(config.train.progress))
    frontend = frontend_config(config)
    augment = augment_config(config)
    sr = int(config.data.sample_rate)
    max_samples = int(round(float(config.data.max_seconds) * sr))
    bucket_samples = int(round(float(config.data.bucket_seconds) * sr))
    shortest = min(
        int(min(c.lengths.min(), max_samples)) for c in (data.train, data.val, data.test)
    )
    pools = tuple(tuple(p) for p in config.model.pools)
    check_min_frames(int(num_frames(shortest, frontend)), pools, "data.max_seconds/shortest clip")

    mesh = parallel.make_mesh()
    batch_size = int(config.train.batch_size)
    parallel.check_batch_divides(batch_size, mesh)
    mode = str(config.augment.mode)
    if mode not in ("online", "offline"):
        raise ConfigError(f"augment.mode={mode!r}; choose online or offline")
    copies = int(config.augment.copies) if mode == "offline" else 0
    if mode == "offline" and copies < 1:
        raise ConfigError("augment.mode='offline' needs augment.copies >= 1")
    batches = TrainBatches(
        data.train,
        batch_size,
        seed=int(config.seed),
        max_samples=max_samples,
        bucket_samples=bucket_samples,
        copies=copies,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    model = create_model(config.model, len(data.label_names))
    tx = make_optimizer(config.train, batches.steps_per_epoch)
    state = create_train_state(model, tx, int(config.seed), frontend.n_mels)
    if frontend.normalize == "dataset":
        stats = dataset_feature_stats(
            data.train,
            frontend,
            batch_size=batch_size,
            max_samples=max_samples,
            bucket_samples=bucket_samples,
        )
        state = state.replace(feature_stats=jax.tree.map(jnp.asarray, stats))
    state_sh = parallel.state_sharding(mesh, state)
    state = jax.device_put(state, state_sh)
    repl = parallel.replicated(mesh)
    batch_sh = parallel.batch_sharding(mesh)

    num_classes = len(data.label_names)
    if bool(config.train.class_weighting):
        counts = np.bincount(data.train.labels, minlength=num_classes).astype(np.float64)
        cw = np.where(counts > 0, counts.sum() / (num_classes * np.maximum(counts, 1)), 0.0)
    else:
        cw = np.ones(num_classes)
    class_weights = jax.device_put(jnp.asarray(cw, jnp.float32), repl)

    step = jax.jit(
        functools.partial(
            train_step,
            frontend=frontend,
            augment=augment if augment.enabled else None,
            offline=copies > 0,
            seed=int(config.seed),
            label_smoothing=float(config.train.label_smoothing),
        ),
        in_shardings=(state_sh, batch_sh, repl),
        out_shardings=(state_sh, repl),
        donate_argnums=0,
    )
    evaluate = jax.jit(
        functools.partial(eval_step, frontend=frontend),
        in_shardings=(state_sh, batch_sh),
        out_shardings=(repl, repl),
    )
    return Trainer(
        config=config,
        data=data,
        mesh=mesh,
        model=model,
        frontend=frontend,
        augment=augment,
        batches=batches,
        state=state,
        class_weights=class_weights,
        train_step=step,
        eval_step=evaluate,
        schedule=make_schedule(config.train, batches.steps_per_epoch),
        max_samples=max_samples,
        bucket_samples=bucket_samples,
    )


def run_info(config: Any, data: PreparedData) -> dict[str, Any]:
    def version(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=Path(__file__).parent,
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", False
    return {
        "git_commit": commit or None,
        "git_dirty": dirty,
        "python": sys.version.split()[0],
        "versions": {
            p: version(p)
            for p in (
                "ser_jax",
                "jax",
                "jaxlib",
                "flax",
                "optax",
                "orbax-checkpoint",
                "grain",
                "numpy",
                "librosa",
            )
        },
        "devices": parallel.device_summary(),
        "seed": int(config.seed),
        "label_map": {name: i for i, name in enumerate(data.label_names)},
        "data": data.summary(),
    }


SELECT_MODES = {"val_uar": "max", "val_accuracy": "max", "val_macro_f1": "max", "val_loss": "min"}


def train_and_evaluate(
    config: Any, workdir: str | Path, *, data: PreparedData | None = None
) -> dict[str, Any]:
    """Train (resuming from the latest checkpoint in ``workdir`` if any), select on validation,
    evaluate the selected model once on the test split, write reports; returns results.

    A finished run (``results.json`` present) is not trained or tested again: its results are
    returned as they are.
    """
    from ser_jax.reports.figures import plot_curves

    workdir = Path(workdir)
    main = jax.process_index() == 0
    select = str(config.train.select)
    if select != "last" and select not in SELECT_MODES:
        raise ConfigError(f"train.select={select!r}; choose last or one of {sorted(SELECT_MODES)}")
    done = workdir / "results.json"
    if done.exists():
        results = json.loads(done.read_text())
        if main:
            print(f"{workdir} is finished (results.json); not training it again")
        return results
    if main:
        workdir.mkdir(parents=True, exist_ok=True)
    trainer = build_trainer(config, data)
    data = trainer.data
    if main:
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")
        (workdir / "run_info.json").write_text(json.dumps(run_info(config, data), indent=2) + "\n")
        for s in data.skipped:
            print(f"skipped {s.path}: {s.reason}", file=sys.stderr)

    tcfg = config.train
    spe = trainer.steps_per_epoch
    epochs = int(tcfg.epochs)
    total_steps = epochs * spe
    eval_every = max(1, int(tcfg.eval_every_epochs))
    ckpt_every = int(tcfg.checkpoint_every_steps)
    metric_key = select if select != "last" else "val_uar"
    sign = 1.0 if SELECT_MODES.get(metric_key, "max") == "max" else -1.0
    ckpt = Checkpointer(
        workdir / "checkpoints",
        keep=int(tcfg.keep_checkpoints),
        best_metric="score" if select != "last" else None,
    )
    meta: dict[str, Any] = {"history": [], "best_step": None, "best_score": None, "stale_evals": 0}
    state = trainer.state
    latest = ckpt.latest_step()
    if latest is not None:
        state, meta = ckpt.restore(latest, state)
        if main:
            print(f"resuming from step {latest} of {total_steps} ({workdir / 'checkpoints'})")

    start = int(state.step)
    writer = _MetricWriter(workdir, enabled=main, resume_step=start)
    stopped_early = bool(meta.get("stopped_early", False))
    pending: list[tuple[int, jax.Array]] = []
    epoch_sums = dict(meta.get("epoch_sums") or {"loss": 0.0, "correct": 0.0, "count": 0.0})
    t_epoch = time.perf_counter()
    samples_seen = 0
    bar = _progress(enabled=main and bool(tcfg.progress), total=total_steps, initial=start)

    def say(line: str) -> None:
        if bar is not None:
            bar.write(line)
        elif main:
            print(line, flush=True)

    def check_finite() -> None:
        if not pending:
            return
        losses = jax.device_get([loss for _, loss in pending])
        for (s, _), value in zip(pending, losses, strict=True):
            if not math.isfinite(float(value)):
                raise NonFiniteLossError(
                    f"training loss is {float(value)} at step {s} (epoch {s // spe + 1}); "
                    f"no checkpoint was written after step {s - 1}. Lower train.learning_rate "
                    "or set train.grad_clip."
                )
        pending.clear()

    step = start
    try:
        batch_iter = trainer.batches.iterate(start, total_steps) if not stopped_early else iter(())
        for batch in batch_iter:
            state, m = trainer.train_step(
                state, parallel.to_global(batch, trainer.mesh), trainer.class_weights
            )
            pending.append((step, m["loss"]))
            for k in epoch_sums:
                epoch_sums[k] += m[k]
            samples_seen += int(config.train.batch_size)
            step += 1
            if bar is not None:
                bar.update(1)
            if step % int(tcfg.log_every_steps) == 0:
                check_finite()
                loss = float(m["loss"])
                writer.write({"step": step, "train_loss_step": loss, "lr": _lr(trainer, step)})
                if bar is not None:
                    rate = samples_seen / max(time.perf_counter() - t_epoch, 1e-9)
                    bar.set_postfix(loss=f"{loss:.3f}", samples_s=f"{rate:.1f}")
            end_of_epoch = step % spe == 0
            if end_of_epoch:
                epoch = step // spe
                check_finite()
                sums = jax.device_get(epoch_sums)
                elapsed = time.perf_counter() - t_epoch
                row: dict[str, Any] = {
                    "epoch": epoch,
                    "step": step,
                    "train_loss": float(sums["loss"]) / spe,
                    "train_accuracy": float(sums["correct"]) / max(float(sums["count"]), 1.0),
                    "epoch_seconds": elapsed,
                    "samples_per_second": samples_seen / max(elapsed, 1e-9),
                    "lr": _lr(trainer, step),
                }
                metrics = None
                if epoch % eval_every == 0 or epoch == epochs:
                    val = trainer.evaluate(data.val, state)
                    row.update(
                        val_loss=val["loss"],
                        val_accuracy=val["accuracy"],
                        val_uar=val["uar"],
                        val_macro_f1=val["macro_f1"],
                    )
                    score = sign * row[metric_key]
                    # Ties go to the later epoch (more training; orbax's BestN keeps it too).
                    improved = meta["best_score"] is None or score >= meta["best_score"]
                    if improved:
                        meta["best_score"], meta["best_step"] = score, step
                        meta["stale_evals"] = 0
                    else:
                        meta["stale_evals"] += 1
                    row["best"] = bool(improved)
                    metrics = {"score": score}
                meta["history"].append(row)
                writer.write(row)
                patience = int(tcfg.early_stopping_patience)
                if patience and meta["stale_evals"] >= patience:
                    meta["stopped_early"] = True
                epoch_sums = {"loss": 0.0, "correct": 0.0, "count": 0.0}
                meta["epoch_sums"] = epoch_sums
                ckpt.save(step, state, meta, metrics, force=True)
                say(_epoch_line(row))
                samples_seen = 0
                t_epoch = time.perf_counter()
                if meta.get("stopped_early"):
                    say(f"early stop: no validation gain for {patience} evaluations")
                    break
            elif ckpt_every and step % ckpt_every == 0:
                check_finite()
                epoch_sums = {k: float(v) for k, v in jax.device_get(epoch_sums).items()}
                meta["epoch_sums"] = epoch_sums
                ckpt.save(step, state, meta, None, force=True)
    finally:
        if bar is not None:
            bar.close()
        ckpt.wait()

    # Model selection on validation only, then the test split, read once.
    if select != "last" and meta["best_step"] is not None and meta["best_step"] != int(state.step):
        final_state, _ = ckpt.restore(int(meta["best_step"]), state)
    else:
        final_state = state
    selected_step = int(final_state.step)
    test = trainer.evaluate(data.test, final_state)
    ckpt.close()
    history = meta["history"]
    results = {
        "name": str(config.get("name", "")),
        "seed": int(config.seed),
        "split": data.split.name,
        "selected_step": selected_step,
        "selected_epoch": selected_step // spe,
        "select": select,
        "epochs_run": len(history),
        "stopped_early": bool(meta.get("stopped_early", False)),
        "test_accuracy": test["accuracy"],
        "test_uar": test["uar"],
        "test_macro_f1": test["macro_f1"],
        "test_loss": test["loss"],
        "val_at_selected": next(
            (
                {k: h[k] for k in h if k.startswith("val_")}
                for h in history
                if h["step"] == selected_step
            ),
            None,
        ),
        "epoch_seconds_median": _timing_median(history, "epoch_seconds"),
        "samples_per_second_median": _timing_median(history, "samples_per_second"),
        "devices": parallel.device_summary(),
    }
    if main:
        probs = test.pop("probs")
        preds = [
            {
                "utt_id": u.utt_id,
                "path": u.path,
                "speaker": u.speaker,
                "label": data.label_names[int(y)],
                "predicted": data.label_names[int(p.argmax())],
                "probs": {n: round(float(v), 5) for n, v in zip(data.label_names, p, strict=True)},
            }
            for u, y, p in zip(data.test.utts, data.test.labels, probs, strict=True)
        ]
        write_report(workdir, "test", test, preds)
        if history:
            plot_curves(
                history, workdir / "curves.png", title=f"{results['name']} seed {results['seed']}"
            )
        (workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        print(format_table(test))
    else:
        test.pop("probs")
    writer.close()
    results["test_metrics"] = test
    return results


def _timing_median(history: list[dict[str, Any]], key: str) -> float:
    """Median over epochs, leaving out the first (it includes compilation) when there are more."""
    rows = history[1:] or history
    return float(np.median([h[key] for h in rows])) if rows else 0.0


def _lr(trainer: Trainer, step: int) -> float:
    return float(trainer.schedule(step))


def _epoch_line(row: dict[str, Any]) -> str:
    line = f"epoch {row['epoch']:3d}  train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.3f}"
    if "val_uar" in row:
        line += (
            f"  | val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.3f} "
            f"UAR {row['val_uar']:.3f}{'  *' if row.get('best') else ''}"
        )
    return line + f"  ({row['epoch_seconds']:.1f} s, {row['samples_per_second']:.1f} samples/s)"


def _progress(*, enabled: bool, total: int, initial: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, leave=True)


class _MetricWriter:
    """metrics.jsonl plus TensorBoard events (tensorboardX), on process 0 only."""

    def __init__(self, workdir: Path, *, enabled: bool, resume_step: int = 0):
        self.enabled = enabled
        self._tb = None
        if enabled:
            _drop_rows_after(workdir / "metrics.jsonl", resume_step)
            self._file = open(workdir / "metrics.jsonl", "a")
            try:
                from tensorboardX import SummaryWriter

                self._tb = SummaryWriter(str(workdir / "tb"))
            except ImportError:
                self._tb = None

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in row.items():
                if (
                    isinstance(v, (int, float))
                    and not isinstance(v, bool)
                    and k not in ("step", "epoch")
                ):
                    self._tb.add_scalar(k, v, row["step"])

    def close(self) -> None:
        if self.enabled:
            self._file.close()
            if self._tb is not None:
                self._tb.close()


def _drop_rows_after(path: Path, step: int) -> None:
    """Keep the rows of ``path`` up to ``step``, the step a run resumes from.

    A killed run may have written rows past its last checkpoint (and a torn last line); the
    resumed run writes those steps again, so without this an epoch would appear twice.
    """
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # the line a kill cut short
            continue
        if int(row.get("step", 0)) <= step:
            kept.append(line + "\n")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(kept))
    tmp.replace(path)


def config_from_json(path: str | Path) -> ml_collections.ConfigDict:
    """The resolved config a run wrote (``config.json``), back as a ConfigDict."""
    return ml_collections.ConfigDict(json.loads(Path(path).read_text()))
