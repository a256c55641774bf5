"""The default experiment configuration: every field the trainer reads, with its default.

This file is itself an ml_collections config file (it has ``get_config()``), and it is the
embedded default of ``ser-jax train``: the synthetic demo corpus, generated on first use, and a
small CNN-LSTM that learns it in a minute on a laptop CPU. Experiment files under
``experiments/configs/`` import it and change a few fields; the command line changes any field
with ``--config.section.field=value``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.name = "demo"
    c.seed = 0

    # --- corpus and protocol -------------------------------------------------------------
    c.data = ml_collections.ConfigDict()
    c.data.corpus = "demo"  # a registered corpus name: demo | emodb | folder | csv | tfds:<name>
    c.data.root = ""  # corpus folder (CSV file for "csv"); "" for demo = runs/_demo_corpus
    c.data.sample_rate = 16000
    c.data.strict = False  # True: the first bad file stops the run instead of being skipped
    # Drop the exact zeros at both ends of each file (digital silence: padding, never recorded
    # sound) before anything else, so the model masks it like batch padding instead of reading
    # it as audio. The shared Emo-DB copy pads a quarter of its files with up to 0.54 s of it.
    c.data.trim_silence = False
    c.data.max_seconds = 4.0  # longer clips are cropped (random crop in training, centre in eval)
    c.data.bucket_seconds = 0.5  # batches are padded to a multiple of this (fewer recompiles)
    # True: each training batch holds one speaker's clips, so BatchNorm normalises by that
    # speaker's statistics in training as eval.speaker_bn does for the test speaker (a batch
    # short of train.batch_size is filled with empty rows that count nothing)
    c.data.speaker_batches = False
    c.data.split = "stratified"  # stratified | speakers | loso | speaker_kfold
    c.data.fractions = (0.70, 0.15, 0.15)  # stratified: per label, MATLAB splitEachLabel
    c.data.test_speakers = ()  # speakers: held out for test
    c.data.val_speakers = ()  # speakers: held out for validation ("" -> one chosen by seed)
    c.data.fold = 0  # loso / speaker_kfold: which fold this run trains (loso: sorted speakers)
    # loso / speaker_kfold: validation speakers per fold (loso: the next ones in sorted order;
    # speaker_kfold: the first speaker of each of the next groups); 0: none, all others train
    # (needs train.select="last")
    c.data.val_count = 1
    # True: the validation files join training, the test files unchanged (stratified and
    # speakers splits), for a recipe that selects nothing on them (train.select="last" and no
    # early stopping); loso / speaker_kfold say it with data.val_count=0
    c.data.train_on_val = False
    c.data.folds = 4  # speaker_kfold: number of speaker groups
    c.data.split_seed = -1  # -1: use c.seed; the split's own seed
    c.data.labels = ()  # class order (label id = index); () = from the corpus (EMOTIONS order)
    c.data.demo = ml_collections.ConfigDict()
    c.data.demo.speakers = 4
    c.data.demo.utterances_per_class = 8
    c.data.demo.seconds = (1.5, 3.0)

    # --- on-device front-end (ser_jax.frontend.logmel.FrontendConfig) ---------------------------------
    c.frontend = ml_collections.ConfigDict()
    c.frontend.n_fft = 512
    c.frontend.win_length = 400
    c.frontend.hop_length = 160
    c.frontend.window = "hann"
    c.frontend.center = True
    c.frontend.pad_mode = "constant"
    c.frontend.power = 2.0
    c.frontend.n_mels = 64
    c.frontend.fmin = 0.0
    c.frontend.fmax = ml_collections.config_dict.placeholder(float)
    c.frontend.mel_scale = "slaney"
    c.frontend.mel_norm = "slaney"
    c.frontend.log = "log"
    c.frontend.log_floor = 1e-6
    c.frontend.top_db = 80.0
    # utterance | dataset (training-set mean/std) | speaker (each speaker's own mean/std, from
    # all of that speaker's recordings the job reads, unlabelled: its own protocol) | none
    c.frontend.normalize = "utterance"
    c.frontend.deltas = 0  # extra input channels: 1 = + delta, 2 = + delta and delta-delta
    c.frontend.delta_width = 9
    # + 3 channels from a pitch (F0) track on the same frames (ser_jax.frontend.pitch): voicing, log-F0,
    # and the F0 contour (log-F0 minus the clip's mean), searched over [pitch_fmin, pitch_fmax]
    c.frontend.pitch = False
    c.frontend.pitch_level = True  # False: no log-F0 channel (the speaker's own pitch level)
    # normalize "dataset" or "speaker": + the clip-normalised log-mel as one more channel, so the
    # network sees the clip's level and tilt and its own contrasts
    c.frontend.clip_channel = False
    c.frontend.pitch_fmin = 60.0
    c.frontend.pitch_fmax = 500.0
    # > 0: that many cepstral coefficients (orthonormal DCT-II of the log-mel) replace the bands
    c.frontend.mfcc = 0
    # + 6 spectral descriptors per frame as more bands: log energy, zero-crossing rate, log
    # centroid, bandwidth, 85% roll-off and flatness (ser_jax.frontend.logmel.DESCRIPTORS)
    c.frontend.descriptors = False

    # --- augmentation, training batches only (ser_jax.frontend.augment.AugmentConfig) -------------------
    c.augment = ml_collections.ConfigDict()
    c.augment.mode = "online"  # online: fresh draw every step | offline: fixed copies per file
    c.augment.copies = 0  # offline: augmented copies per training file (the original is kept)
    c.augment.time_shift_prob = 0.0
    c.augment.time_shift_max_s = 0.25
    c.augment.time_shift_wrap = False
    c.augment.noise_prob = 0.0
    c.augment.snr_db = (10.0, 30.0)
    c.augment.noise_color = "white"
    c.augment.gain_prob = 0.0
    c.augment.gain_db = (-6.0, 6.0)
    c.augment.pitch_shift_prob = 0.0
    c.augment.semitones = (-2.0, 2.0)
    c.augment.speed_prob = 0.0
    c.augment.speed = (0.9, 1.1)
    c.augment.time_mask_prob = 0.0
    c.augment.time_masks = 2
    c.augment.time_mask_max_frames = 10
    c.augment.freq_mask_prob = 0.0
    c.augment.freq_masks = 2
    c.augment.freq_mask_max_bins = 8

    # --- model (ser_jax.models) ----------------------------------------------------------------
    c.model = ml_collections.ConfigDict()
    c.model.name = "cnn_lstm"
    c.model.filters = (8, 8, 16, 16)
    c.model.kernel = (3, 3)
    c.model.pools = ((2, 2), (2, 2), (2, 2), (2, 2))  # (time, mel) per block
    c.model.activation = "relu"  # relu | elu
    c.model.lstm_hidden = 32
    c.model.dropout = 0.0
    c.model.bn_momentum = 0.9  # Flax's default 0.99 lags far behind at ~10 steps an epoch
    c.model.dilations = ()  # per block kernel dilation over (time, mel); () = all 1
    c.model.residual = ()  # per block: a residual block (two convs + shortcut); () = all plain
    c.model.projection = 0  # Dense units (with the activation) before the LSTM; 0 = none
    c.model.bidirectional = False  # a bidirectional LSTM (forward and backward halves)
    c.model.pooling = "last"  # over LSTM steps: last (valid step) | mean | attention (masked)
    c.model.head_hidden = 0  # Dense units (with the activation) before the output; 0 = none
    # cnn_lstm: a branch of this many Dense units over the input's utterance statistics
    # (models.masked_functionals of every band and channel), concatenated with the pooled LSTM
    # output before the head; 0 = none
    c.model.functionals = 0
    # model.name="functionals": widths of the perceptron over the utterance statistics
    c.model.mlp_hidden = (256, 128)
    # The last channels of the input are per-frame tracks (the pitch channels of
    # frontend.pitch: 3, or 2 with pitch_level=False), summarised once, not per band: by the
    # functionals model and the TDNN; the CNN-LSTM reads them in its statistics branch only
    # (model.functionals > 0), its convolutions see the other channels
    c.model.track_channels = 0
    # model.name="functionals": the statistics of every feature over the clip, in this order
    # (models.masked_functionals: mean, std, change, slope, skew, kurtosis, or "pNN" for the
    # NN-th percentile, p0 the minimum, p100 the maximum)
    c.model.statistics = ("mean", "std", "p10", "p50", "p90", "change", "slope")
    # model.name="tdnn" (x-vector-style time-delay network, models.TDNN): the kernel width over
    # time of each layer; model.filters gives the layers' widths, model.dilations their
    # dilations, model.head_hidden the embedding after the statistics pooling, and
    # model.statistics the pooling's statistics
    c.model.tdnn_kernels = (5, 3, 3, 1)
    # Speaker-adversarial training: a speaker head over the utterance embedding, behind a
    # gradient reversal of scale speaker_reversal, trained on the training speakers (the
    # corpus's speakers in sorted order index it, so it needs at least that many classes);
    # prediction never uses it. 0 = off.
    c.model.speaker_classes = 0
    c.model.speaker_reversal = 1.0
    # MixStyle (domain generalisation across speakers): in training, after the conv blocks
    # mixstyle_blocks, each example's per-channel feature statistics are mixed with another
    # example's with probability mixstyle_prob, weight ~ Beta(mixstyle_alpha, mixstyle_alpha);
    # scoring never mixes. 0 = off.
    c.model.mixstyle_prob = 0.0
    c.model.mixstyle_alpha = 0.1
    c.model.mixstyle_blocks = (0, 1)

    # --- evaluation --------------------------------------------------------------------------
    c.eval = ml_collections.ConfigDict()
    # Test-time augmentation: also score the test split with every clip shifted by each of
    # these seconds (zero-filled, as training's time shift) and probabilities averaged;
    # reported beside the plain test numbers (results.json "tta"). () = off.
    c.eval.tta_shifts = ()
    # Test-time augmentation by vocal-tract warps: also score every clip (and shifted clip)
    # with its frequency axis warped by each of these semitones (the warp of pitch-shift
    # augmentation, augment.pitch_shift_prob), averaged with the rest of "tta". () = off.
    c.eval.tta_semitones = ()
    # Speaker-adaptive BatchNorm (AdaBN): also score the test split with each test speaker's
    # BatchNorm statistics gathered from that speaker's own clean clips (no labels) instead of
    # the running statistics of training; its own protocol (it needs the speaker's unlabelled
    # recordings), reported beside the plain numbers (results.json "speaker_bn").
    c.eval.speaker_bn = False
    # Which of a speaker's clips give those statistics (audio only, never labels): "scored"
    # (the clips being scored: on LOSO all of the test speaker's), "train" (the speaker's
    # training clips only: no test audio is read, for protocols whose test speakers are in
    # training, as the stratified split), "all" (the speaker's clips in every split).
    c.eval.speaker_bn_source = "scored"

    # --- optimisation (ser_jax.training.train) ------------------------------------------------------
    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 16
    c.train.epochs = 15
    c.train.optimizer = "adam"  # adam | adamw | sgd
    c.train.learning_rate = 3e-3
    c.train.schedule = "constant"  # constant | piecewise | cosine
    c.train.drop_factor = 0.1  # piecewise: multiply by this every drop_period epochs
    c.train.drop_period = 10
    c.train.warmup_epochs = 0.0  # cosine: linear warm-up
    c.train.weight_decay = 0.0  # adamw: decoupled decay; adam/sgd: L2 added to the gradient
    c.train.grad_clip = 0.0  # global-norm clipping; 0 = off
    c.train.label_smoothing = 0.0
    c.train.mixup_alpha = 0.0  # mixup of features and targets, lam ~ Beta(a, a); 0 = off
    c.train.ema_decay = 0.0  # EMA of the weights (evaluated, selected and saved); 0 = off
    c.train.class_weighting = False  # weight the loss by inverse training class frequency
    # Logit-adjusted loss (Menon et al. 2021): the loss sees logits + tau * log(training class
    # prior), prediction the plain logits, so no class wins for being frequent (aimed at UAR,
    # balanced error). 0 = off; 1 = the published rule.
    c.train.logit_adjustment = 0.0
    c.train.eval_every_epochs = 1
    c.train.select = "val_uar"  # best checkpoint by this validation metric; "last" = last epoch
    c.train.early_stopping_patience = 0  # epochs without validation gain; 0 = off
    c.train.checkpoint_every_steps = 0  # 0 = every epoch end
    c.train.keep_checkpoints = 2
    c.train.progress = True
    c.train.log_every_steps = 10
    # Seeds (--seeds N) and cross-validation folds trained together as members of one compiled
    # step, up to this many at once; 0 = one model at a time (ser_jax.training.train.train_members).
    c.train.members = 0
    # Another draw of the training randomness on the same split: initial weights, batch order,
    # augmentation and offline copies use seed + 1000 * seed_offset, while the split and the
    # run's seed (its name in summaries, what committees match on) stay those of c.seed.
    # Directories of one recipe with offsets 0, 1, 2, ... give `ser-jax ensemble` a seed
    # ensemble on each of the seed protocol's splits.
    c.train.seed_offset = 0
    # How one device runs its share of those models: vmap (batched into each op: accelerators),
    # unroll (one after another in the compiled step: CPUs), or auto (by the backend).
    c.train.members_loop = "auto"
    # Compute every training clip's features once before training and feed the model from that
    # cache (ser_jax.training.steps.cached_training_features): the same steps without the front-end in
    # each of them. For clean training features or offline augmentation's fixed copies (not
    # online augmentation, nor frontend.normalize="speaker"), of clips that all fit one bucket,
    # none longer than data.max_seconds.
    c.train.cache_features = False
    return c


def config_beside(here: str, name: str) -> ml_collections.ConfigDict:
    """``get_config()`` of the config file ``name`` in the folder of ``here`` (a preset's
    ``__file__``): presets build on one another without being a package."""
    path = Path(here).with_name(name)
    spec = importlib.util.spec_from_file_location(f"_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()
