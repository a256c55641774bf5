"""One place that turns a config into the static objects every stage uses.

``resolve(config)`` checks the config against the default's fields (a typo names the closest
known field), refuses values that cannot train (``check_settings``: a learning rate that is not
positive, no epochs, ...) and combinations that cannot work, before any work starts, and hands
on a :class:`RunSpec`: the front-end and augmentation settings, sample counts, the augmentation
mode, and the training-loop settings, each converted and checked once.
The data stage (``ser_jax.data.prepare``) reads ``config.data`` itself; the model registry
(``ser_jax.models``) reads ``config.model``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

from ser_jax.config import get_config
from ser_jax.errors import ConfigError
from ser_jax.frontend.augment import AugmentConfig
from ser_jax.frontend.logmel import FrontendConfig
from ser_jax.settings import closest

# Validation metrics a run can select its checkpoint by, and which way is better; "last" takes
# the last epoch (the MATLAB example's protocol).
SELECT_METRICS = {"val_uar": "max", "val_accuracy": "max", "val_macro_f1": "max", "val_loss": "min"}
AUGMENT_MODES = ("online", "offline")
# eval.speaker_bn_source: which of a speaker's clips give its BatchNorm statistics
SPEAKER_BN_SOURCES = ("scored", "train", "all")
_LOOP_KEYS = ("mode", "copies")  # augment fields the loop reads, not AugmentConfig


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """The resolved, static settings of one run (hashable parts go to ``jit`` as static)."""

    name: str
    seed: int
    sample_rate: int
    max_samples: int  # longer clips: random crop in training, windows in evaluation
    trim_silence: bool  # audio loses its exact zeros at both ends (data.trim_silence)
    bucket_samples: int  # batches are padded to a multiple of this
    frontend: FrontendConfig
    augment: AugmentConfig  # training batches only; ``augment.enabled`` says if any is on
    copies: int  # offline augmentation: fixed augmented copies per training file; 0 = online
    batch_size: int
    epochs: int
    label_smoothing: float
    mixup_alpha: float
    ema_decay: float
    class_weighting: bool
    logit_adjustment: float  # tau of the logit-adjusted loss; 0 = off
    select: str  # "last" or a key of SELECT_METRICS
    eval_every: int
    patience: int  # evaluations without a validation gain before stopping; 0 = off
    checkpoint_every_steps: int
    keep_checkpoints: int
    log_every_steps: int
    progress: bool
    members_loop: str  # auto | vmap | unroll: how a device runs its share of stacked models
    tta_shifts: tuple[int, ...]  # test-time augmentation: shifts in samples; () = off
    speaker_bn: bool = False  # also test with each speaker's own BatchNorm statistics
    speaker_bn_source: str = "scored"  # scored | train | all: whose clips give them
    cache_features: bool = False  # training features computed once, not in every step
    tta_semitones: tuple[float, ...] = ()  # test-time augmentation: frequency warps; () = off
    seed_offset: int = 0  # train.seed_offset: another draw of the training randomness

    @property
    def train_seed(self) -> int:
        """The seed of the training randomness (initial weights, batch order, augmentation,
        offline copies): ``seed + 1000 * seed_offset``; the split and the run's name keep
        ``seed``."""
        return self.seed + 1000 * self.seed_offset

    @property
    def tta(self) -> bool:
        """Whether the test split is also scored with test-time augmentation."""
        return bool(self.tta_shifts or self.tta_semitones)

    @property
    def tta_warps(self) -> tuple[float, ...]:
        """The frequency-warp factors of ``tta_semitones`` (``2**(semitones/12)``)."""
        return warp_factors(self.tta_semitones)

    @property
    def select_metric(self) -> str:
        """The validation metric tracked as "best" (UAR for ``select="last"``, for the log)."""
        return self.select if self.select != "last" else "val_uar"

    @property
    def select_sign(self) -> float:
        return 1.0 if SELECT_METRICS[self.select_metric] == "max" else -1.0


def check_semitones(values: Any, setting: str) -> tuple[float, ...]:
    """Test-time warps in semitones, as floats; refused, naming ``setting``, unless each is a
    non-zero number within ±12 (the unwarped clip is always scored beside them)."""
    try:
        semitones = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{setting}={values!r}: not a list of numbers of semitones (e.g. -6,6)"
        ) from None
    bad = [v for v in semitones if not (math.isfinite(v) and v != 0 and abs(v) <= 12)]
    if bad:
        raise ConfigError(
            f"{setting}={semitones}: {bad} not a warp to score (each a non-zero number of "
            "semitones within ±12; the unwarped clip is always scored)"
        )
    return semitones


def warp_factors(semitones: Sequence[float]) -> tuple[float, ...]:
    """Frequency-warp factors of warps in semitones (``2**(semitones/12)``)."""
    return tuple(2.0 ** (float(v) / 12.0) for v in semitones)


def check_known_fields(config: Any, default: Any | None = None, prefix: str = "") -> None:
    """Refuse fields the default config does not have, naming the closest known one."""
    if default is None:
        default = get_config()
    for key in config.keys():
        where = f"{prefix}{key}"
        if key not in default:
            raise ConfigError(
                f"config field {where!r} is not a setting{closest(key, default.keys())}"
            )
        value, ref = config[key], default[key]
        if hasattr(ref, "keys") and hasattr(value, "keys"):
            check_known_fields(value, ref, where + ".")


def _number(section: Any, name: str, where: str) -> float:
    """``section[name]`` as a finite float, refused (naming ``where``) otherwise."""
    value = section[name]
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}={value!r}: not a number") from None
    if not math.isfinite(number):
        raise ConfigError(f"{where}={value!r}: must be a finite number")
    return number


def _whole(v: float) -> bool:
    return v == int(v)


# Values that cannot train: (section, field, the schedule it belongs to or None, the test a
# value passes, the cause named when it does not).
_SETTING_RULES: tuple[tuple[str, str, str | None, Callable[[float], bool], str], ...] = (
    ("train", "learning_rate", None, lambda v: v > 0, "must be a positive number"),
    ("train", "epochs", None, lambda v: v >= 1 and _whole(v), "must be a whole number >= 1"),
    ("train", "batch_size", None, lambda v: v >= 1 and _whole(v), "must be a whole number >= 1"),
    ("train", "weight_decay", None, lambda v: v >= 0, "must be >= 0 (0 = off)"),
    ("train", "grad_clip", None, lambda v: v >= 0, "must be >= 0 (0 = off)"),
    ("train", "label_smoothing", None, lambda v: 0 <= v < 1, "must be in [0, 1) (0 = off)"),
    ("model", "dropout", None, lambda v: 0 <= v < 1, "must be in [0, 1) (0 = off)"),
    (
        "train",
        "early_stopping_patience",
        None,
        lambda v: v >= 0 and _whole(v),
        "must be a whole number >= 0 (0 = off)",
    ),
    (
        "train",
        "checkpoint_every_steps",
        None,
        lambda v: v >= 0 and _whole(v),
        "must be a whole number >= 0 (0 = at every epoch end)",
    ),
    (
        "train",
        "warmup_epochs",
        "cosine",
        lambda v: v >= 0,
        "must be >= 0 (0 = no warm-up of train.schedule='cosine')",
    ),
    (
        "train",
        "drop_factor",
        "piecewise",
        lambda v: v > 0,
        "must be a positive number (train.schedule='piecewise' multiplies the learning rate "
        "by it every train.drop_period epochs)",
    ),
    (
        "train",
        "drop_period",
        "piecewise",
        lambda v: v > 0,
        "must be a positive number of epochs (train.schedule='piecewise')",
    ),
)


def check_settings(config: Any) -> None:
    """Refuse training and model values that cannot train (``_SETTING_RULES``), each with
    one line naming the field, its value and the cause: a learning rate that is not positive,
    fewer than one epoch or one clip a batch, a negative weight decay, clipping norm,
    patience or checkpoint interval, label smoothing or dropout outside [0, 1), and the
    settings of the chosen schedule (cosine: a negative warm-up; piecewise: a drop factor or
    period that is not positive). A field the config lacks is not checked."""
    schedule = str(config.train.get("schedule", ""))
    for section, name, only_for, ok, cause in _SETTING_RULES:
        node = config.get(section)
        if node is None or name not in node or only_for not in (None, schedule):
            continue
        where = f"{section}.{name}"
        if not ok(_number(node, name, where)):
            raise ConfigError(f"{where}={node[name]!r}: {cause}")


def resolve(config: Any) -> RunSpec:
    """The :class:`RunSpec` of ``config``, after refusing unknown fields, values that cannot
    train and combinations that cannot work."""
    check_known_fields(config)
    check_settings(config)
    sr = int(config.data.sample_rate)
    fields = dict(config.frontend)
    fields["sample_rate"] = sr
    frontend = FrontendConfig.from_config(fields)
    augment, copies = _augment(config.augment)
    t = config.train
    _check_loss_terms(t)
    seed_offset = int(t.get("seed_offset", 0))
    if seed_offset < 0:
        raise ConfigError(
            f"train.seed_offset={seed_offset}: must be >= 0 (0 = the seed's own draw; 1, 2, ... "
            "other draws on the same split)"
        )
    speaker_bn_source = str(config.eval.get("speaker_bn_source", "scored"))
    if speaker_bn_source not in SPEAKER_BN_SOURCES:
        raise ConfigError(
            f"eval.speaker_bn_source={speaker_bn_source!r}; choose " + ", ".join(SPEAKER_BN_SOURCES)
        )
    members_loop = str(t.members_loop)
    if members_loop not in ("auto", "vmap", "unroll"):
        raise ConfigError(f"train.members_loop={members_loop!r}; choose auto, vmap or unroll")
    select = _select(config)
    tta_semitones = check_semitones(config.eval.get("tta_semitones", ()), "eval.tta_semitones")
    cache_features = bool(t.get("cache_features", False))
    _check_cache(cache_features, config.augment, augment, copies, frontend)
    return RunSpec(
        name=str(config.get("name", "")),
        seed=int(config.seed),
        sample_rate=sr,
        max_samples=int(round(float(config.data.max_seconds) * sr)),
        trim_silence=bool(config.data.get("trim_silence", False)),
        bucket_samples=int(round(float(config.data.bucket_seconds) * sr)),
        frontend=frontend,
        augment=augment,
        copies=copies,
        batch_size=int(t.batch_size),
        epochs=int(t.epochs),
        label_smoothing=float(t.label_smoothing),
        mixup_alpha=float(t.mixup_alpha),
        ema_decay=float(t.ema_decay),
        class_weighting=bool(t.class_weighting),
        logit_adjustment=float(t.get("logit_adjustment", 0.0)),
        select=select,
        eval_every=max(1, int(t.eval_every_epochs)),
        patience=int(t.early_stopping_patience),
        checkpoint_every_steps=int(t.checkpoint_every_steps),
        keep_checkpoints=int(t.keep_checkpoints),
        log_every_steps=max(1, int(t.log_every_steps)),
        progress=bool(t.progress),
        members_loop=members_loop,
        tta_shifts=tuple(int(round(float(x) * sr)) for x in config.eval.tta_shifts),
        speaker_bn=bool(config.eval.speaker_bn),
        speaker_bn_source=speaker_bn_source,
        cache_features=cache_features,
        tta_semitones=tta_semitones,
        seed_offset=seed_offset,
    )


def _augment(aug: Any) -> tuple[AugmentConfig, int]:
    """The augmentation settings and the number of offline copies (0: online)."""
    augment = AugmentConfig.from_config({k: v for k, v in dict(aug).items() if k not in _LOOP_KEYS})
    mode = str(aug.mode)
    if mode not in AUGMENT_MODES:
        raise ConfigError(f"augment.mode={mode!r}; choose online or offline")
    copies = int(aug.copies) if mode == "offline" else 0
    if mode == "offline" and copies < 1:
        raise ConfigError("augment.mode='offline' needs augment.copies >= 1")
    return augment, copies


def _check_loss_terms(t: Any) -> None:
    """The EMA decay, the logit adjustment and mixup's alpha."""
    if not 0.0 <= float(t.ema_decay) < 1.0:
        raise ConfigError(f"train.ema_decay={t.ema_decay}: must be in [0, 1) (0 = off)")
    if float(t.get("logit_adjustment", 0.0)) < 0:
        raise ConfigError(
            f"train.logit_adjustment={t.logit_adjustment}: must be >= 0 (0 = off, 1 = the "
            "logit-adjusted loss)"
        )
    if float(t.mixup_alpha) < 0:
        raise ConfigError(f"train.mixup_alpha={t.mixup_alpha}: must be >= 0 (0 = off)")


def _select(config: Any) -> str:
    """``train.select``, refused when unknown or when the split leaves nothing to select on."""
    t = config.train
    select = str(t.select)
    if select != "last" and select not in SELECT_METRICS:
        raise ConfigError(
            f"train.select={select!r}; choose last or one of {sorted(SELECT_METRICS)}"
        )
    if str(config.data.split) == "all" and select != "last":
        raise ConfigError(
            "data.split='all' trains on every file and leaves nothing to validate on: set "
            "train.select='last' (a fixed number of epochs)"
        )
    if (
        str(config.data.split) in ("loso", "speaker_kfold")
        and int(config.data.val_count) == 0
        and select != "last"
    ):
        raise ConfigError(
            "data.val_count=0 leaves no validation speaker (every speaker but the test ones "
            f"trains), so train.select={select!r} has nothing to select on: set "
            "train.select='last' (a fixed number of epochs)"
        )
    if bool(config.data.get("train_on_val", False)):
        split = str(config.data.split)
        if split not in ("stratified", "speakers"):
            raise ConfigError(
                f"data.train_on_val=True moves a stratified or speakers split's validation "
                f"files into training; data.split={split!r}"
                + (" says it with data.val_count=0" if split in ("loso", "speaker_kfold") else "")
            )
        if select != "last" or int(t.early_stopping_patience) > 0:
            raise ConfigError(
                "data.train_on_val=True leaves no validation file to select on: set "
                f"train.select='last' (is {select!r}) and train.early_stopping_patience=0 "
                f"(is {int(t.early_stopping_patience)})"
            )
    return select


def _check_cache(
    cache_features: bool, aug: Any, augment: AugmentConfig, copies: int, frontend: FrontendConfig
) -> None:
    """``train.cache_features`` holds fixed features: not with online augmentation nor
    per-speaker normalisation."""
    if cache_features and augment.enabled and copies == 0:
        on = sorted(k for k, v in dict(aug).items() if k.endswith("_prob") and float(v) > 0)
        raise ConfigError(
            "train.cache_features=True holds fixed features, but online augmentation draws "
            f"anew every step ({', '.join(on) or 'augment'}): set those to 0, use "
            "augment.mode='offline' (fixed copies), or train.cache_features=False"
        )
    if cache_features and frontend.normalize == "speaker":
        raise ConfigError(
            "train.cache_features=True does not support frontend.normalize='speaker' (each "
            "batch brings its speakers' statistics): set train.cache_features=False"
        )
