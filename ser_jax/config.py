"""The default experiment configuration: every field the trainer reads, with its default.

This file is itself an ml_collections config file (it has ``get_config()``), and it is the
embedded default of ``ser-jax train``: the synthetic demo corpus, generated on first use, and a
small CNN-LSTM that learns it in a minute on a laptop CPU. Experiment files under
``experiments/configs/`` (and its ``archive/``) each start from it and change their own fields,
never from one another, so one file says a whole recipe; the command line changes any field
with ``--config.section.field=value``.

One function a section. The ``model`` section is flat (``model.lstm_hidden``), assembled from
the fields each model family declares beside its module (``ser_jax.models``: ``config_fields``
in ``cnn_lstm.py``, ``functionals.py`` and ``tdnn.py``, the shared ones in ``registry.py``).
"""

from __future__ import annotations

import ml_collections

from ser_jax.models import model_section


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.name = "demo"
    c.seed = 0
    c.data = data_section()
    c.frontend = frontend_section()
    c.augment = augment_section()
    # model.name picks a family (ser_jax.models); the section is flat, each family's fields
    # declared beside it (config_fields() in ser_jax/models/cnn_lstm.py, functionals.py,
    # tdnn.py; the fields all of them read in ser_jax/models/registry.py)
    c.model = model_section()
    c.eval = eval_section()
    c.train = train_section()
    return c


def data_section() -> ml_collections.ConfigDict:
    """The corpus and the protocol: which files, how they are read and split."""
    s = ml_collections.ConfigDict()
    s.corpus = "demo"  # a registered corpus name: demo | emodb | folder | csv | tfds:<name>
    s.root = ""  # corpus folder (CSV file for "csv"); "" for demo = runs/_demo_corpus
    s.sample_rate = 16000
    s.strict = False  # True: the first bad file stops the run instead of being skipped
    # Drop the exact zeros at both ends of each file (digital silence: padding, never recorded
    # sound) before anything else, so the model masks it like batch padding instead of reading
    # it as audio. The shared Emo-DB copy pads a quarter of its files with up to 0.54 s of it.
    s.trim_silence = False
    s.max_seconds = 4.0  # longer clips are cropped (random crop in training, centre in eval)
    s.bucket_seconds = 0.5  # batches are padded to a multiple of this (fewer recompiles)
    # True: each training batch holds one speaker's clips, so BatchNorm normalises by that
    # speaker's statistics in training as eval.speaker_bn does for the test speaker (a batch
    # short of train.batch_size is filled with empty rows that count nothing)
    s.speaker_batches = False
    s.split = "stratified"  # stratified | speakers | loso | speaker_kfold
    s.fractions = (0.70, 0.15, 0.15)  # stratified: per label, MATLAB splitEachLabel
    s.test_speakers = ()  # speakers: held out for test
    s.val_speakers = ()  # speakers: held out for validation ("" -> one chosen by seed)
    s.fold = 0  # loso / speaker_kfold: which fold this run trains (loso: sorted speakers)
    # loso / speaker_kfold: validation speakers per fold (loso: the next ones in sorted order;
    # speaker_kfold: the first speaker of each of the next groups); 0: none, all others train
    # (needs train.select="last")
    s.val_count = 1
    # True: the validation files join training, the test files unchanged (stratified and
    # speakers splits), for a recipe that selects nothing on them (train.select="last" and no
    # early stopping); loso / speaker_kfold say it with data.val_count=0
    s.train_on_val = False
    s.folds = 4  # speaker_kfold: number of speaker groups
    s.split_seed = -1  # -1: use c.seed; the split's own seed
    s.labels = ()  # class order (label id = index); () = from the corpus (EMOTIONS order)
    s.demo = ml_collections.ConfigDict()
    s.demo.speakers = 4
    s.demo.utterances_per_class = 8
    s.demo.seconds = (1.5, 3.0)
    return s


def frontend_section() -> ml_collections.ConfigDict:
    """The on-device front-end (``ser_jax.frontend.logmel.FrontendConfig``)."""
    s = ml_collections.ConfigDict()
    s.n_fft = 512
    s.win_length = 400
    s.hop_length = 160
    s.window = "hann"
    s.center = True
    s.pad_mode = "constant"
    s.power = 2.0
    s.n_mels = 64
    s.fmin = 0.0
    s.fmax = ml_collections.config_dict.placeholder(float)
    s.mel_scale = "slaney"
    s.mel_norm = "slaney"
    s.log = "log"
    s.log_floor = 1e-6
    s.top_db = 80.0
    # utterance | dataset (training-set mean/std) | speaker (each speaker's own mean/std, from
    # all of that speaker's recordings the job reads, unlabelled: its own protocol) | none
    s.normalize = "utterance"
    s.deltas = 0  # extra input channels: 1 = + delta, 2 = + delta and delta-delta
    s.delta_width = 9
    # + 3 channels from a pitch (F0) track on the same frames (ser_jax.frontend.pitch): voicing, log-F0,
    # and the F0 contour (log-F0 minus the clip's mean), searched over [pitch_fmin, pitch_fmax]
    s.pitch = False
    s.pitch_level = True  # False: no log-F0 channel (the speaker's own pitch level)
    # normalize "dataset" or "speaker": + the clip-normalised log-mel as one more channel, so the
    # network sees the clip's level and tilt and its own contrasts
    s.clip_channel = False
    s.pitch_fmin = 60.0
    s.pitch_fmax = 500.0
    # > 0: that many cepstral coefficients (orthonormal DCT-II of the log-mel) replace the bands
    s.mfcc = 0
    # + 6 spectral descriptors per frame as more bands: log energy, zero-crossing rate, log
    # centroid, bandwidth, 85% roll-off and flatness (ser_jax.frontend.logmel.DESCRIPTORS)
    s.descriptors = False
    return s


def augment_section() -> ml_collections.ConfigDict:
    """Augmentation of training batches only (``ser_jax.frontend.augment.AugmentConfig``)."""
    s = ml_collections.ConfigDict()
    s.mode = "online"  # online: fresh draw every step | offline: fixed copies per file
    s.copies = 0  # offline: augmented copies per training file (the original is kept)
    s.time_shift_prob = 0.0
    s.time_shift_max_s = 0.25
    s.time_shift_wrap = False
    s.noise_prob = 0.0
    s.snr_db = (10.0, 30.0)
    s.noise_color = "white"
    s.gain_prob = 0.0
    s.gain_db = (-6.0, 6.0)
    s.pitch_shift_prob = 0.0
    s.semitones = (-2.0, 2.0)
    s.speed_prob = 0.0
    s.speed = (0.9, 1.1)
    s.time_mask_prob = 0.0
    s.time_masks = 2
    s.time_mask_max_frames = 10
    s.freq_mask_prob = 0.0
    s.freq_masks = 2
    s.freq_mask_max_bins = 8
    return s


def eval_section() -> ml_collections.ConfigDict:
    """Evaluation: test-time augmentation and speaker-adaptive BatchNorm."""
    s = ml_collections.ConfigDict()
    # Test-time augmentation: also score the test split with every clip shifted by each of
    # these seconds (zero-filled, as training's time shift) and probabilities averaged;
    # reported beside the plain test numbers (results.json "tta"). () = off.
    s.tta_shifts = ()
    # Test-time augmentation by vocal-tract warps: also score every clip (and shifted clip)
    # with its frequency axis warped by each of these semitones (the warp of pitch-shift
    # augmentation, augment.pitch_shift_prob), averaged with the rest of "tta". () = off.
    s.tta_semitones = ()
    # Speaker-adaptive BatchNorm (AdaBN): also score the test split with each test speaker's
    # BatchNorm statistics gathered from that speaker's own clean clips (no labels) instead of
    # the running statistics of training; its own protocol (it needs the speaker's unlabelled
    # recordings), reported beside the plain numbers (results.json "speaker_bn").
    s.speaker_bn = False
    # Which of a speaker's clips give those statistics (audio only, never labels): "scored"
    # (the clips being scored: on LOSO all of the test speaker's), "train" (the speaker's
    # training clips only: no test audio is read, for protocols whose test speakers are in
    # training, as the stratified split), "all" (the speaker's clips in every split).
    s.speaker_bn_source = "scored"
    return s


def train_section() -> ml_collections.ConfigDict:
    """Optimisation (``ser_jax.training.train``)."""
    s = ml_collections.ConfigDict()
    s.batch_size = 16
    s.epochs = 15
    s.optimizer = "adam"  # adam | adamw | sgd
    s.learning_rate = 3e-3
    s.schedule = "constant"  # constant | piecewise | cosine
    s.drop_factor = 0.1  # piecewise: multiply by this every drop_period epochs
    s.drop_period = 10
    s.warmup_epochs = 0.0  # cosine: linear warm-up
    s.weight_decay = 0.0  # adamw: decoupled decay; adam/sgd: L2 added to the gradient
    s.grad_clip = 0.0  # global-norm clipping; 0 = off
    s.label_smoothing = 0.0
    s.mixup_alpha = 0.0  # mixup of features and targets, lam ~ Beta(a, a); 0 = off
    s.ema_decay = 0.0  # EMA of the weights (evaluated, selected and saved); 0 = off
    s.class_weighting = False  # weight the loss by inverse training class frequency
    # Logit-adjusted loss (Menon et al. 2021): the loss sees logits + tau * log(training class
    # prior), prediction the plain logits, so no class wins for being frequent (aimed at UAR,
    # balanced error). 0 = off; 1 = the published rule.
    s.logit_adjustment = 0.0
    s.eval_every_epochs = 1
    s.select = "val_uar"  # best checkpoint by this validation metric; "last" = last epoch
    s.early_stopping_patience = 0  # epochs without validation gain; 0 = off
    s.checkpoint_every_steps = 0  # 0 = every epoch end
    s.keep_checkpoints = 2
    s.progress = True
    s.log_every_steps = 10
    # Seeds (--seeds N) and cross-validation folds trained together as members of one compiled
    # step, up to this many at once; 0 = one model at a time (ser_jax.training.train.train_members).
    s.members = 0
    # Another draw of the training randomness on the same split: initial weights, batch order,
    # augmentation and offline copies use seed + 1000 * seed_offset, while the split and the
    # run's seed (its name in summaries, what committees match on) stay those of c.seed.
    # Directories of one recipe with offsets 0, 1, 2, ... give `ser-jax ensemble` a seed
    # ensemble on each of the seed protocol's splits.
    s.seed_offset = 0
    # How one device runs its share of those models: vmap (batched into each op: accelerators),
    # unroll (one after another in the compiled step: CPUs), or auto (by the backend).
    s.members_loop = "auto"
    # Compute every training clip's features once before training and feed the model from that
    # cache (ser_jax.training.steps.cached_training_features): the same steps without the front-end in
    # each of them. For clean training features or offline augmentation's fixed copies (not
    # online augmentation, nor frontend.normalize="speaker"), of clips that all fit one bucket,
    # none longer than data.max_seconds.
    s.cache_features = False
    return s
