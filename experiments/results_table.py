"""Print the README's results tables from the run directories that hold the numbers.

    python experiments/results_table.py [RUNS_DIR] [--readme README.md]

Every row reads ``<RUNS_DIR>/<dir>/summary.json`` (``ser-jax train --seeds N``) or
``cv_summary.json`` (``ser-jax cv``), and the ``run_info.json`` of the runs under it for the
commit and the processor that made them (a row whose runs came from different commits, or a
dirty tree, says so). A row whose directory is missing says "not run". Reproduction rows show
the paper's own figure and protocol beside ours. With ``--readme FILE`` the tables replace
the blocks of FILE between ``<!-- results:NAME ... -->`` and ``<!-- results:end -->`` (NAME:
repro, main, levers) instead of being printed; a row whose run directory is not under RUNS_DIR
(made on another machine, whose runs are not here) keeps its text from FILE, with the rows
under it, so regenerating the tables on a fresh machine rewrites only the rows it can read.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from ser_jax.evaluation.tables import fmt, markdown  # noqa: E402

SEED_CMD = "ser-jax train --config experiments/configs/{cfg}.py --config.seed=10 --seeds {n} --workdir runs/{dir}"
LOSO_CMD = "ser-jax cv --config experiments/configs/{cfg}.py --seeds 2 --config.train.members=8 {extra}--workdir runs/{dir}"

# (dir, what, paper figure, paper protocol, what differs, command)
REPRODUCTIONS = (
    (
        "matlab",
        "MATLAB example (CNN-LSTM, 3 epochs)",
        "0.6329 accuracy",
        "one stratified 70/15/15 split, full-length files",
        "5 seeds, each its own split; our 2 s crops; filter counts, learning rate and augmentation strength are guesses where the example does not pin them",
        SEED_CMD.format(cfg="matlab", n=5, dir="matlab"),
    ),
    (
        "zhao2019",
        "Zhao et al. 2019, 2-D CNN LSTM",
        "95.33% (speaker-dependent), 95.89% (speaker-independent) accuracy",
        "their splits of full-length files",
        "3 seeds on the stratified split; 2 s crops give 3 LSTM steps; no augmentation",
        SEED_CMD.format(cfg="zhao2019", n=3, dir="zhao2019"),
    ),
    (
        "meng2019_loso",
        "Meng et al. 2019, ADRNN (3-D log-mel, dilated residual CNN, BiLSTM, attention)",
        "85.39% speaker-independent accuracy",
        "their speaker-independent protocol, full-length files",
        "LOSO over 8 speakers, 1 seed; each fold trains on 6 speakers and selects its epoch on the 7th; widths divided by 4 (32-64-64-64, linear 192, BiLSTM 32, FC 16) for the CPU; no center loss; 2 s crops",
        LOSO_CMD.format(
            cfg="meng2019",
            extra="'--config.model.filters=(32,64,64,64)' --config.model.projection=192 "
            "--config.model.lstm_hidden=32 --config.model.head_hidden=16 ",
            dir="meng2019_loso",
        ),
    ),
)

# (dir, what, command)
MAIN = (
    (
        "best",
        "best config, stratified 70/15/15 (the seed protocol)",
        SEED_CMD.format(cfg="best", n=3, dir="best"),
    ),
    (
        "abl_v0_last",  # the base of the lever table below
        "best config, leave-one-speaker-out",
        LOSO_CMD.format(cfg="best", extra="", dir="abl_v0_last"),
    ),
    (
        "ens_levers",
        "ensemble of the lever table's finished LOSO runs (averaged probabilities; beside the "
        "single models, never instead)",
        "ser-jax ensemble --out runs/ens_levers runs/abl_v0_last runs/abl_v0_dsnorm ...",
    ),
    (
        "ens_committee",
        "the committee: one model of each of the five member presets (best.py, "
        "bilstm_attention.py, functionals_pitch.py, functionals_mfcc.py, "
        "functionals_mfcc_shuffled.py), averaged probabilities",
        "ser-jax ensemble --out runs/ens_committee runs/abl_v0_last runs/abl_v0_bilstm_att "
        "runs/func_v0_pitch runs/func_mfcc_v1 runs/func_mfcc_shuffled",
    ),
    *(
        (
            d,
            f"committee member {d}.py, stratified 70/15/15 (the seed protocol)",
            SEED_CMD.format(cfg=d, n=3, dir=d),
        )
        for d in (
            "bilstm_attention",
            "functionals_pitch",
            "functionals_mfcc",
            "functionals_mfcc_shuffled",
        )
    ),
    (
        "ens_committee_seeds",
        "the committee on the seed protocol (stratified 70/15/15): the five member presets' "
        "models of one seed averaged",
        "ser-jax ensemble --out runs/ens_committee_seeds runs/best runs/bilstm_attention "
        "runs/functionals_pitch runs/functionals_mfcc runs/functionals_mfcc_shuffled",
    ),
    (
        "func_mfcc_v1",
        "cepstral functionals, per-speaker standardised, linear classifier "
        "(functionals_mfcc.py), leave-one-speaker-out; its own protocol: the figure to read is "
        "the speaker-adaptive one",
        "ser-jax cv --config experiments/configs/functionals_mfcc.py --config.train.progress=False "
        "--seeds 2 --workdir runs/func_mfcc_v1",
    ),
    (
        "ens_committees",
        "ensemble of the best config's CNN-LSTM and the cepstral functionals, 2 seeds each "
        "(averaged probabilities; beside the single models)",
        "ser-jax ensemble --out runs/ens_committees runs/abl_v0_last runs/func_mfcc_v1",
    ),
    (
        "ens_families",
        "ensemble of two model families: the best config's CNN-LSTM and the functionals model "
        "with pitch, 2 seeds each (averaged probabilities; beside the single models)",
        "ser-jax ensemble --out runs/ens_families runs/abl_v0_last runs/func_v0_pitch",
    ),
)

# The LOSO ablation: each lever switched on against one base, the best config with no
# validation speaker (every speaker but the test one trains, the last epoch is kept), each row
# a `ser-jax cv` run directory (dir, lever). The base row comes first; Δ UAR is against it.
LEVER_BASE = "abl_v0_last"
LEVERS = (
    (LEVER_BASE, "base: best config (no validation speaker, last epoch)"),
    ("abl_v1_uar", "one validation speaker, epoch selected on its UAR (the former best config)"),
    ("abl_v2_uar", "two validation speakers, epoch selected on their UAR"),
    ("abl_v0_ema", "+ weight average (EMA 0.995), last epoch"),
    ("abl_trim_v0", "+ digital silence trimmed (data.trim_silence)"),
    ("abl_trim_v0_vtlp", "+ trimmed + pitch shift (VTLP) and speed perturbation, p=0.5 each"),
    ("abl_v0_deltas", "+ delta and delta-delta channels"),
    ("abl_v0_win64", "+ 64 ms analysis window (n_fft 1024): pitch harmonics resolved"),
    ("abl_v0_win16", "16 ms analysis window (win_length 256): pitch harmonics smeared"),
    ("abl_v0_pitch", "+ pitch track channels (voicing, log-F0, F0 contour)"),
    ("abl_v0_contour", "+ pitch track without the log-F0 level (voicing, F0 contour)"),
    (
        "abl_v0_dsnorm",
        "log-mel normalised by training-set mean/std, not per clip (keeps level and tilt)",
    ),
    (
        "abl_v0_twoview",
        "both log-mel views as channels: by training-set mean/std and per clip",
    ),
    ("abl_v0_bilstm_att", "+ BiLSTM (128 each way) + attention pooling"),
    ("abl_v0_spkadv", "+ speaker-adversarial head (gradient reversal 0.3)"),
    ("abl_v0_mixstyle", "+ MixStyle after the first two conv blocks (p 0.5, Beta(0.1, 0.1))"),
    ("abl_v0_narrow", "narrower early blocks, 32-32-64-128 filters (a cheaper step)"),
    ("abl_v0_cw_ls", "+ class-weighted loss + label smoothing 0.1"),
    ("abl_v0_la", "+ logit-adjusted loss, tau 1 (no bonus for a frequent class)"),
    ("abl_v0_spknorm", "+ per-speaker log-mel normalisation (own protocol)"),
    ("abl_v0_spkbatch", "+ one speaker per training batch (BatchNorm per speaker in training)"),
    (
        "abl_v0_twoview_func",
        "both log-mel views + a branch over their utterance statistics (128 units)",
    ),
    (
        "abl_v0_twoview_func_bilstm_att",
        "both views + statistics branch, with BiLSTM (128 each way) + attention pooling",
    ),
    ("func_v0", "utterance statistics + perceptron instead of the CNN-LSTM (functionals.py)"),
    ("func_v0_pitch", "utterance statistics + perceptron, with the pitch tracks (functionals.py)"),
    (
        "func_v0_pitch_wide",
        "utterance statistics + pitch, wider perceptron (512-256) with dropout 0.1",
    ),
    (
        "func_mfcc",
        "cepstral functionals (20 MFCC + 6 spectral descriptors, deltas), speaker batches of "
        "32, augmentation on (functionals_mfcc.py at 4fb7eca)",
    ),
    (
        "func_mfcc_whole",
        "cepstral functionals, one whole speaker a batch (72), 80 epochs, augmentation on",
    ),
    (
        "func_mfcc_whole_noaug",
        "cepstral functionals, one whole speaker a batch, 80 epochs, no augmentation",
    ),
    (
        "func_mfcc_linear",
        "cepstral functionals, whole-speaker batches, no augmentation, linear classifier (L2 0.03)",
    ),
    (
        "func_mfcc_shuffled",
        "cepstral functionals, shuffled batches of 32 (BatchNorm learns the training set's "
        "statistics), no augmentation, linear classifier",
    ),
    (
        "func_mfcc_shuffled_pitch",
        "cepstral functionals, shuffled batches, + the three pitch tracks' statistics",
    ),
    (
        "func_mfcc_shuffled_stats13",
        "cepstral functionals, shuffled batches, 13 statistics a feature (+ 1st, 25th, 75th, "
        "99th percentiles, skew, kurtosis)",
    ),
    (
        "func_mfcc_shuffled_pitch_stats13",
        "cepstral functionals, shuffled batches, pitch tracks and 13 statistics a feature",
    ),
    ("func_mfcc_shuffled_m40", "cepstral functionals, shuffled batches, 40 cepstral coefficients"),
    ("func_mfcc_shuffled_wd01", "cepstral functionals, shuffled batches, weaker L2 (0.01)"),
    ("func_mfcc_shuffled_wd1", "cepstral functionals, shuffled batches, stronger L2 (0.1)"),
    (
        "abl_v0_spkwhole_noaug",
        "one whole speaker a batch (72), no augmentation: the cepstral recipe's training",
    ),
    ("abl_v0_crop15", "random 1.5 s crops in training; at test, 2 overlapping 1.5 s windows"),
    ("abl_v0_b16", "batch 16 (twice the updates: 880 a fold)"),
    ("abl_v0_noaug", "no augmentation at all (no shift, gain, noise or SpecAugment)"),
    ("abl_v0_nospec", "weaker augmentation: no SpecAugment"),
    ("abl_v0_spec_strong", "stronger SpecAugment: 3 time and 3 mel masks, p=0.8 each"),
    ("abl_v0_e80", "longer: 80 epochs of cosine, dropout 0.3"),
)

# The round on the Intel Xeon: the base and the committee members rerun on that processor
# (its own base, as its numbers differ from the AMD rows' in the last digits), each with the
# balanced decision beside it, and the committees under both rules of combining.
XEON_LEVERS = (
    ("xeon_base", "base: best config (no validation speaker, last epoch)"),
    ("xeon_bilstm_att", "+ BiLSTM (128 each way) + attention pooling (bilstm_attention.py)"),
    ("xeon_crop15", "random 1.5 s crops in training; at test, 2 overlapping 1.5 s windows"),
    (
        "xeon_func_pitch",
        "utterance statistics + perceptron, with the pitch tracks (functionals_pitch.py)",
    ),
    (
        "xeon_func_mfcc",
        "cepstral functionals, standardised per speaker, linear (functionals_mfcc.py)",
    ),
    (
        "xeon_func_mfcc_shuffled",
        "cepstral functionals, shuffled batches, linear (functionals_mfcc_shuffled.py)",
    ),
    ("xeon_spec_strong", "stronger SpecAugment: 3 time and 3 mel masks, p=0.8 each"),
    ("xeon_nospec", "weaker augmentation: no SpecAugment"),
    ("xeon_cw_ls", "+ class-weighted loss + label smoothing 0.1"),
)
XEON_FIVE = "runs/xeon_base runs/xeon_bilstm_att runs/xeon_func_pitch runs/xeon_func_mfcc runs/xeon_func_mfcc_shuffled"
XEON_FOUR = "runs/xeon_base runs/xeon_func_pitch runs/xeon_func_mfcc runs/xeon_func_mfcc_shuffled"
# The committee's member presets (experiments/configs/<name>.py).
MEMBERS = (
    "best",
    "bilstm_attention",
    "functionals_pitch",
    "functionals_mfcc",
    "functionals_mfcc_shuffled",
)
XEON_SEEDS = " ".join(f"runs/xeon_seeds_{m}" for m in MEMBERS)
XEON_MAIN = (
    (
        "xeon_committee",
        "the committee of the five member presets, averaged probabilities",
        f"ser-jax ensemble --out runs/xeon_committee {XEON_FIVE}",
    ),
    (
        "xeon_committee_geo",
        "the committee of the five member presets, geometric mean of probabilities",
        f"ser-jax ensemble --rule geometric --out runs/xeon_committee_geo {XEON_FIVE}",
    ),
    (
        "xeon_committee4",
        "four members (no BiLSTM-attention model), averaged probabilities",
        f"ser-jax ensemble --out runs/xeon_committee4 {XEON_FOUR}",
    ),
    (
        "xeon_committee4_geo",
        "four members (no BiLSTM-attention model), geometric mean of probabilities",
        f"ser-jax ensemble --rule geometric --out runs/xeon_committee4_geo {XEON_FOUR}",
    ),
    *(
        (
            f"xeon_seeds_{m}",
            f"{m}.py, stratified 70/15/15 (the seed protocol)",
            SEED_CMD.format(cfg=m, n=3, dir=f"xeon_seeds_{m}"),
        )
        for m in MEMBERS
    ),
    (
        "xeon_seeds_committee",
        "the committee on the seed protocol, averaged probabilities",
        f"ser-jax ensemble --out runs/xeon_seeds_committee {XEON_SEEDS}",
    ),
    (
        "xeon_seeds_committee_geo",
        "the committee on the seed protocol, geometric mean of probabilities",
        f"ser-jax ensemble --rule geometric --out runs/xeon_seeds_committee_geo {XEON_SEEDS}",
    ),
)


# The round after the statistics branch was fixed (6caf846), on an Intel Xeon: the fixed
# two-view network as the new base of the CNN-LSTM family, new families and the committee
# members rerun.
ROUND2_LEVERS = (
    (
        "x_twoview_func",
        "base: two log-mel views + statistics branch over the whole clip (twoview_functionals.py, branch fixed)",
    ),
    ("x_base", "best.py, rerun at this round's commit (the named committee's member)"),
    ("x_tdnn", "x-vector-style TDNN with statistics pooling (tdnn.py)"),
    ("x_bilstm_att", "best.py + BiLSTM (128 each way) + attention pooling (bilstm_attention.py)"),
    (
        "x_func_pitch",
        "utterance statistics + perceptron, with the pitch tracks (functionals_pitch.py)",
    ),
    ("x_func_mfcc", "cepstral functionals, standardised per speaker, linear (functionals_mfcc.py)"),
    (
        "x_func_mfcc_shuffled",
        "cepstral functionals, shuffled batches, linear (functionals_mfcc_shuffled.py)",
    ),
)
ROUND2_SEEDS = (
    ("s_twoview_func", "twoview_functionals"),
    ("s_func_mfcc_shuffled", "functionals_mfcc_shuffled"),
)
ROUND2_FIVE = (
    "runs/x_twoview_func runs/x_bilstm_att runs/x_func_pitch runs/x_func_mfcc "
    "runs/x_func_mfcc_shuffled"
)
ROUND2_MAIN = (
    (
        "x_committee",
        "the committee with the fixed two-view network in best.py's place, averaged "
        "probabilities (the rule fixed before its members finished)",
        f"ser-jax ensemble --out runs/x_committee {ROUND2_FIVE}",
    ),
    (
        "x_committee4",
        "four members with the fixed two-view network in best.py's place (no BiLSTM-attention "
        "model: its run had not finished), averaged probabilities",
        "ser-jax ensemble --out runs/x_committee4 runs/x_twoview_func runs/x_func_pitch "
        "runs/x_func_mfcc runs/x_func_mfcc_shuffled",
    ),
    (
        "x_committee_base",
        "the committee of the five member presets (best.py, as named), averaged probabilities",
        "ser-jax ensemble --out runs/x_committee_base runs/x_base runs/x_bilstm_att "
        "runs/x_func_pitch runs/x_func_mfcc runs/x_func_mfcc_shuffled",
    ),
    *(
        (
            d,
            f"{cfg}.py, stratified 70/15/15 (the seed protocol)",
            SEED_CMD.format(cfg=cfg, n=3, dir=d),
        )
        for d, cfg in ROUND2_SEEDS
    ),
    (
        "s_twoview_func_pitch",
        "twoview_functionals.py with the pitch tracks in the branch, stratified 70/15/15",
        "ser-jax train --config experiments/configs/twoview_functionals.py "
        "--config.frontend.pitch=True --config.model.track_channels=3 --config.seed=10 --seeds 3 "
        "--config.train.progress=False --workdir runs/s_twoview_func_pitch",
    ),
    *(
        (
            f"s_cep_mlp{w}",
            f"functionals_mfcc_shuffled.py with a hidden layer of {w} (dropout {p}) instead of "
            "the linear classifier, stratified 70/15/15",
            "ser-jax train --config experiments/configs/functionals_mfcc_shuffled.py "
            f"'--config.model.mlp_hidden=({w},)' --config.model.dropout={p} --config.seed=10 "
            f"--seeds 3 --config.train.progress=False --workdir runs/s_cep_mlp{w}",
        )
        for w, p in ((256, 0.3), (512, 0.5))
    ),
    (
        "s_cep_stats13",
        "functionals_mfcc_shuffled.py with 13 statistics a feature (+ 1st, 25th, 75th, 99th "
        "percentiles, skew, kurtosis), stratified 70/15/15",
        "ser-jax train --config experiments/configs/functionals_mfcc_shuffled.py "
        '\'--config.model.statistics=("mean","std","p1","p10","p25","p50","p75",'
        '"p90","p99","change","slope","skew","kurtosis")\' --config.seed=10 --seeds 3 '
        "--config.train.progress=False --workdir runs/s_cep_stats13",
    ),
    (
        "s_ens_tv_cep",
        "the two-view network and the shuffled cepstral model on the seed protocol, averaged",
        "ser-jax ensemble --out runs/s_ens_tv_cep runs/s_twoview_func runs/s_func_mfcc_shuffled",
    ),
)


# Speaker-adaptive BatchNorm on the seed protocol from each test speaker's training clips
# (eval.speaker_bn_source="train": no test audio read for the statistics), on an Intel Xeon.
BN_TRAIN = "--config.eval.speaker_bn=True --config.eval.speaker_bn_source={src}"
ROUND3_MEMBERS = (
    ("s_best_bntrain", "best", "train"),
    ("s_bilstm_bntrain", "bilstm_attention", "train"),
    ("s_pitch_bntrain", "functionals_pitch", "train"),
    ("s_cepw_bntrain", "functionals_mfcc", "train"),
    ("s_cep_bntrain", "functionals_mfcc_shuffled", "train"),
)
ROUND3_MAIN = (
    *(
        (
            d,
            f"{cfg}.py, stratified 70/15/15, speaker-adaptive BatchNorm from the speaker's "
            f"{'training clips' if src == 'train' else 'clips in every split'}",
            f"ser-jax train --config experiments/configs/{cfg}.py {BN_TRAIN.format(src=src)} "
            f"--config.seed=10 --seeds 3 --config.train.progress=False --workdir runs/{d}",
        )
        for d, cfg, src in (*ROUND3_MEMBERS, ("s_cepw_bnall", "functionals_mfcc", "all"))
    ),
    (
        "s_twoview_func",
        "twoview_functionals.py, stratified 70/15/15, speaker-adaptive BatchNorm from the "
        "speaker's training clips scored later from the saved models",
        "ser-jax train --config experiments/configs/twoview_functionals.py --config.seed=10 "
        f"--seeds 3 --config.train.progress=False {BN_TRAIN.format(src='train')} "
        "--workdir runs/s_twoview_func",
    ),
    (
        "s_committee_bntrain",
        "the committee of the five member presets on the seed protocol (the rule fixed before "
        "its members ran), averaged; its members also scored with speaker-adaptive BatchNorm "
        "from the speaker's training clips (the ↳ rows)",
        "ser-jax ensemble --out runs/s_committee_bntrain "
        + " ".join(f"runs/{d}" for d, _, _ in ROUND3_MEMBERS),
    ),
)


# Committee run weights chosen across speakers (ser-jax ensemble --weight_grid), an Intel Xeon.
ROUND4_NAMED = "runs/x_base runs/x_bilstm_att runs/x_func_pitch runs/x_func_mfcc " + (
    "runs/x_func_mfcc_shuffled"
)
ROUND4_TWOVIEW = ROUND4_NAMED.replace("runs/x_base", "runs/x_twoview_func")
SEED_NAMED = (
    "runs/s_best_bntrain runs/s_bilstm_bntrain runs/s_pitch_bntrain runs/s_cepw_bntrain "
    "runs/s_cep_bntrain"
)
# the named best's members other than the cepstral one, seeds 2-3 (rounds 4 and 7)
NAMED_S23 = "runs/x_base_s23 runs/x_bilstm_att_s23 runs/x_func_pitch_s23"
ROUND4_MAIN = (
    (
        "x_committee6_w",
        "the six LOSO runs of this round (the named committee's five and the two-view "
        "network), run weights chosen across speakers from {0,1,2}, averaged probabilities "
        "(the rule written down before best.py's rerun finished)",
        "ser-jax ensemble --weight_grid 0,1,2 --out runs/x_committee6_w runs/x_twoview_func "
        + ROUND4_NAMED,
    ),
    (
        "x_committee_base_w",
        "the named committee (five presets, best.py), run weights chosen across speakers "
        "from {0,1,2}",
        "ser-jax ensemble --weight_grid 0,1,2 --out runs/x_committee_base_w " + ROUND4_NAMED,
    ),
    (
        "x_committee_w1212",
        "the named best: best.py, BiLSTM-attention, the pitch functionals and the shuffled "
        "cepstral model, run weights 1, 2, 1, 2 (shipped as emodb-committee-weighted)",
        "ser-jax ensemble --weights 1,2,1,2 --out runs/x_committee_w1212 runs/x_base "
        "runs/x_bilstm_att runs/x_func_pitch runs/x_func_mfcc_shuffled",
    ),
    (
        "s_committee_w1212",
        "the named best on the seed protocol (seeds 10-12), run weights 1, 2, 1, 2",
        "ser-jax ensemble --weights 1,2,1,2 --out runs/s_committee_w1212 runs/s_best_bntrain "
        "runs/s_bilstm_bntrain runs/s_pitch_bntrain runs/s_cep_bntrain",
    ),
    (
        "x_func_pitch_s23",
        "functionals_pitch.py, seeds 2 and 3",
        "ser-jax cv --config experiments/configs/functionals_pitch.py "
        "--config.eval.speaker_bn=True --config.train.progress=False --config.seed=2 --seeds 2 "
        "--workdir runs/x_func_pitch_s23",
    ),
    (
        "x_func_mfcc_shuffled_s23",
        "functionals_mfcc_shuffled.py, seeds 2 and 3",
        "ser-jax cv --config experiments/configs/functionals_mfcc_shuffled.py "
        "--config.train.progress=False --config.seed=2 --seeds 2 "
        "--workdir runs/x_func_mfcc_shuffled_s23",
    ),
    (
        "x_committee_w1212_s23",
        "the named best again with other seeds (written down before they ran): best.py's "
        "seeds 0-1, the other three members' seeds 2-3, run weights 1, 2, 1, 2",
        "ser-jax ensemble --weights 1,2,1,2 --out runs/x_committee_w1212_s23 runs/x_base "
        "runs/x_bilstm_att_s23 runs/x_func_pitch_s23 runs/x_func_mfcc_shuffled_s23",
    ),
    (
        "x_base_s23",
        "best.py, seeds 2 and 3",
        "ser-jax cv --config experiments/configs/best.py --config.data.val_count=0 "
        "--config.train.select=last --config.eval.speaker_bn=True --config.train.progress=False "
        "--config.seed=2 --seeds 2 '--config.eval.tta_shifts=(-0.1,-0.05,0.05,0.1)' "
        "--workdir runs/x_base_s23",
    ),
    (
        "x_committee_w1212_s23all",
        "the named best on seeds 2-3 of all four members (written down before best.py's ran), "
        "run weights 1, 2, 1, 2",
        "ser-jax ensemble --weights 1,2,1,2 --out runs/x_committee_w1212_s23all "
        f"{NAMED_S23} runs/x_func_mfcc_shuffled_s23",
    ),
    (
        "x_committee_family",
        "the named committee averaged within each family first (the two CNN-LSTMs and the "
        "three functionals models each half the vote: run weights 3, 3, 2, 2, 2)",
        "ser-jax ensemble --weights 3,3,2,2,2 --out runs/x_committee_family " + ROUND4_NAMED,
    ),
    (
        "s_best_noaug",
        "best.py without augmentation (no time shift, gain, noise or SpecAugment), stratified "
        "70/15/15 (the seed protocol)",
        "ser-jax train --config experiments/configs/best.py --config.eval.speaker_bn=True "
        "--config.eval.speaker_bn_source=train --config.seed=10 --seeds 3 "
        "--config.train.progress=False --config.augment.time_shift_prob=0.0 "
        "--config.augment.noise_prob=0.0 --config.augment.gain_prob=0.0 "
        "--config.augment.time_mask_prob=0.0 --config.augment.freq_mask_prob=0.0 "
        "--workdir runs/s_best_noaug",
    ),
    (
        "s_committee_w",
        "the named committee's weights 1, 2, 1, 0, 2 (chosen on LOSO, x_committee_base_w) "
        "applied unchanged on the seed protocol: the five member presets of seeds 10-12",
        "ser-jax ensemble --weights 1,2,1,0,2 --out runs/s_committee_w " + SEED_NAMED,
    ),
    (
        "s_committee6",
        "seed protocol: the five member presets and the two-view network, averaged",
        "ser-jax ensemble --out runs/s_committee6 " + SEED_NAMED + " runs/s_twoview_func",
    ),
    (
        "s_committee_cep3_tv",
        "seed protocol: the three strongest seed-protocol models (the shuffled cepstral model, "
        "the same with 13 statistics, the two-view network), averaged",
        "ser-jax ensemble --out runs/s_committee_cep3_tv runs/s_cep_bntrain runs/s_cep_stats13 "
        "runs/s_twoview_func",
    ),
    (
        "s_committee_cep_tv",
        "seed protocol: the shuffled cepstral model and the two-view network, averaged",
        "ser-jax ensemble --out runs/s_committee_cep_tv runs/s_cep_bntrain runs/s_twoview_func",
    ),
    (
        "x_committee_w",
        "the second round's rule's committee (the two-view network in best.py's place), run "
        "weights chosen across speakers from {0,1,2}",
        "ser-jax ensemble --weight_grid 0,1,2 --out runs/x_committee_w " + ROUND4_TWOVIEW,
    ),
    (
        "x_committee_w_geo",
        "the same, geometric mean of probabilities",
        "ser-jax ensemble --rule geometric --weight_grid 0,1,2 --out runs/x_committee_w_geo "
        + ROUND4_TWOVIEW,
    ),
    (
        "x_committee_w3",
        "the same, averaged, run weights from {0,1,2,3}",
        "ser-jax ensemble --weight_grid 0,1,2,3 --out runs/x_committee_w3 " + ROUND4_TWOVIEW,
    ),
    (
        "x_bilstm_att_s23",
        "bilstm_attention.py, seeds 2 and 3 (two more BiLSTM-attention models a fold)",
        "ser-jax cv --config experiments/configs/bilstm_attention.py "
        "--config.eval.speaker_bn=True --config.train.progress=False --config.seed=2 --seeds 2 "
        "--workdir runs/x_bilstm_att_s23",
    ),
    (
        "x_committee_b2",
        "the weights 1, 2, 1, 0, 2 of the named committee made into models, all weighted "
        "alike: best.py, BiLSTM-attention seeds 0-1 and 2-3, the pitch functionals, the "
        "shuffled cepstral model twice (the rule written down before seeds 2-3 ran)",
        "ser-jax ensemble --weights 1,1,1,1,2 --out runs/x_committee_b2 runs/x_base "
        "runs/x_bilstm_att runs/x_bilstm_att_s23 runs/x_func_pitch runs/x_func_mfcc_shuffled",
    ),
)


def pooled_uar(run_root: Path, key: str = "pooled") -> float | None:
    """A cv run's pooled test UAR (``key="pooled_speaker_bn"``: with speaker-adaptive BN)."""
    path = run_root / "cv_summary.json"
    if not path.exists():
        return None
    got = json.loads(path.read_text()).get(key)
    return None if got is None else got["test_uar"]["mean"]


def fold_uars(run_root: Path, speaker_bn: bool = False) -> dict[str, list[float]]:
    """Test UAR of each finished fold run of a cv directory, by fold (``fold0-03``);
    ``speaker_bn``: the UAR with speaker-adaptive BatchNorm, of the runs that scored it."""
    out: dict[str, list[float]] = {}
    for path in sorted(run_root.glob("fold*/seed*/results.json")):
        r = json.loads(path.read_text())
        uar = (r.get("speaker_bn") or {}).get("test_uar") if speaker_bn else r["test_uar"]
        if uar is not None:
            out.setdefault(path.parent.parent.name, []).append(uar)
    return out


def stopped_row(run_root: Path, base_root: Path, what: str) -> list[str]:
    """A lever whose cv run has not finished every fold (stopped, or still running): the mean
    UAR of the folds it finished, against the base's mean over the same folds; or "not run"."""
    done = fold_uars(run_root)
    if not done:
        return [what, "not run at this commit", "", "", "", "", "", "", ""]
    base = fold_uars(base_root)
    ours = [u for us in done.values() for u in us]
    theirs = [u for f in done for u in base.get(f, [])]
    delta = f"{np.mean(ours) - np.mean(theirs):+.3f} (same folds)" if theirs else ""
    adapted = [u for us in fold_uars(run_root, speaker_bn=True).values() for u in us]
    infos = sorted(run_root.glob("fold*/seed*/run_info.json"))
    cmd = json.loads(infos[0].read_text()).get("command", "") if infos else ""
    return [
        what,
        f"only {len(done)} of the folds finished: fold mean",
        "",
        f"{np.mean(ours):.3f}",
        "",
        delta,
        f"{np.mean(adapted):.3f} (fold mean)" if adapted else "",
        f"`{cmd}`" if cmd else "",
        provenance(run_root),
    ]


def kept_rows(block: str) -> dict[str, list[list[str]]]:
    """The rows of a Markdown table by their first cell, each with the ``↳`` rows under it
    (the README's current block: what a row says when its run directory is not here)."""
    groups: dict[str, list[list[str]]] = {}
    current: list[list[str]] | None = None
    for line in block.splitlines()[2:]:  # below the header and its rule
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip()[1:-1].split(" | ")]
        if cells[0].startswith("↳"):
            if current is not None:
                current.append(cells)
            continue
        current = groups.setdefault(cells[0], [])
        current.append(cells)
    return groups


def lever_rows(
    root: Path,
    levers: tuple[tuple[str, str], ...] = LEVERS,
    kept: dict[str, list[list[str]]] | None = None,
    balanced: bool = False,
    tta: bool = False,
) -> str:
    """One row a lever: pooled LOSO metrics (mean ± std over seeds), its UAR change against
    the first row, the UAR with speaker-adaptive BatchNorm when the run scored it (its own
    protocol), the recorded command and who made it; ``balanced``: also the UAR of the
    balanced decision (÷ training prior), plain and with speaker-adaptive BatchNorm; ``tta``:
    also the UAR with test-time augmentation."""
    base = pooled_uar(root / levers[0][0])
    beside = (
        ["pooled_speaker_bn"]
        + (["pooled_balanced", "pooled_speaker_bn_balanced"] if balanced else [])
        + (["pooled_tta"] if tta else [])
    )
    rows = []
    for d, what in levers:
        if not (root / d).exists() and what in (kept or {}):
            rows += kept[what]
            continue
        got = metrics(root / d)
        if got is None:
            row = stopped_row(root / d, root / levers[0][0], what)
            rows.append(row[:7] + [""] * (len(beside) - 1) + row[7:])
            continue
        uar = pooled_uar(root / d)
        delta = "" if d == levers[0][0] or base is None else f"{uar - base:+.3f}"
        cmd = recorded_command(root / d, "")
        rows.append(
            [
                what,
                got[0],
                *got[1],
                delta,
                *("" if (u := pooled_uar(root / d, key)) is None else f"{u:.3f}" for key in beside),
                f"`{cmd}`",
                provenance(root / d),
            ]
        )
    names = (
        ["UAR, speaker-adaptive BN"]
        + (["UAR, balanced decision", "UAR, speaker-adaptive BN, balanced"] if balanced else [])
        + (["UAR, test-time augmentation"] if tta else [])
    )
    return markdown(
        [
            "lever",
            "runs",
            "test accuracy",
            "test UAR",
            "test macro-F1",
            "Δ UAR",
            *names,
            "command",
            "made by",
        ],
        rows,
    )


def provenance(run_root: Path) -> str:
    """``commit[ (dirty)] on <processor>`` of every run under ``run_root``."""
    commits, cpus, dirty = set(), set(), False
    for info in sorted(run_root.rglob("run_info.json")):
        data = json.loads(info.read_text())
        commits.add((data.get("git_commit") or "?")[:10])
        dirty |= bool(data.get("git_dirty"))
        cpus.add(data.get("processor") or data.get("devices", {}).get("device_kind", "?"))
    if not commits:
        return "?"
    commit = commits.pop() if len(commits) == 1 else "mixed commits " + "/".join(sorted(commits))
    return f"{commit}{' (dirty tree)' if dirty else ''} on {', '.join(sorted(cpus))}"


def recorded_command(run_root: Path, template: str) -> str:
    """The command that wrote the run's summary (recorded in it), else the documented one."""
    for name in ("summary.json", "cv_summary.json", "ensemble_summary.json"):
        path = run_root / name
        if path.exists():
            return json.loads(path.read_text()).get("command") or template
    return template


def rule_note(summary: dict) -> str:
    """How an ensemble combined its models, when not by the mean (older summaries: the mean),
    and its run weights when given."""
    note = ", geometric mean" if summary.get("rule") == "geometric" else ""
    if summary.get("weights"):
        note += f", run weights {', '.join(f'{w:g}' for w in summary['weights'])}"
    return note


def metrics(run_root: Path) -> tuple[str, list[str]] | None:
    """``(runs, [accuracy, UAR, macro-F1])`` of a run directory, or None if not run."""
    summary, cv = run_root / "summary.json", run_root / "cv_summary.json"
    ensemble = run_root / "ensemble_summary.json"
    if ensemble.exists():
        s = json.loads(ensemble.read_text())
        if s.get("protocol") == "seeds":  # committees of seed-protocol runs, one a seed
            c = s["committees"]["pooled"]
            runs = (
                f"{len(s['members'])} runs, a committee a seed ({', '.join(map(str, s['seeds']))}),"
                f" each its own split (runs' mean UAR {s['member_mean_uar']:.3f}){rule_note(s)}"
            )
            return runs, [fmt(c[m], 3) for m in ("accuracy", "uar", "macro_f1")]
        runs = (
            f"{len(s['members'])} runs, {s['models_per_file']} models a file "
            f"(runs' mean UAR {s['member_mean_uar']:.3f}), pooled{rule_note(s)}"
        )
        return runs, [f"{s['pooled'][m]:.3f}" for m in ("accuracy", "uar", "macro_f1")]
    if summary.exists():
        s = json.loads(summary.read_text())
        runs = f"{len(s['seeds'])} seeds ({', '.join(map(str, s['seeds']))}), each its own split"
        return runs, [fmt(s[m], 3) for m in ("test_accuracy", "test_uar", "test_macro_f1")]
    if cv.exists():
        s = json.loads(cv.read_text())
        folds = len(s["per_fold"]) // max(len(s["seeds"]), 1)
        kind = "LOSO" if "leave-one" in s.get("protocol", "leave-one") else "speaker k-fold"
        runs = f"{kind} {folds} folds x {len(s['seeds'])} seeds, pooled"
        return runs, [
            fmt(s["pooled"][m], 3) for m in ("test_accuracy", "test_uar", "test_macro_f1")
        ]
    return None


def tta_views(tta: dict, its: str = "its ") -> str:
    """The views a ``results.json`` (or seed summary) ``tta`` block averaged beside the clip:
    ``"its shifts by -0.1, +0.1 s and its warps by -6, +6 semitones"`` (``its=""``: without
    the pronoun)."""
    shifts = ", ".join(f"{x:+g}" for x in tta.get("shifts_seconds", []))
    warps = ", ".join(f"{x:+g}" for x in tta.get("semitones", []))
    views = [f"{its}shifts by {shifts} s"] * bool(shifts) + [
        f"{its}warps by {warps} semitones"
    ] * bool(warps)
    return " and ".join(views)


def tta_note(run_root: Path, summary: dict) -> str:
    """The shifts of a cv run's test-time augmentation, and the commit that scored it when
    that was not the training job (read from its first fold run's ``results.json``)."""
    first = summary["per_fold"][0]
    path = run_root / f"fold{first['fold']}-{first['speaker']}" / f"seed{first['seed']}"
    tta = json.loads((path / "results.json").read_text()).get("tta") or {}
    views = tta_views(tta)
    note = f" (the clip and {views}, averaged)" if views else ""
    later = tta.get("scored_later")
    if later:
        note += f", scored later from the saved models at {later['git_commit'][:10]}"
    return note


# The seed protocol's own round (an Intel Xeon): the shuffled cepstral model with the pitch
# tracks and 13 statistics a feature, the variants it is chosen among (their validation figures
# beside), and its check on three other seeds, written down before it ran.
STATS13 = (
    '\'--config.model.statistics=("mean","std","p1","p10","p25","p50","p75","p90","p99",'
    '"change","slope","skew","kurtosis")\''
)
ROUND5_SEED = (
    ("s5_cep", "functionals_mfcc_shuffled", "", "the shuffled cepstral model (7 statistics)"),
    ("s5_cep_stats13", "functionals_mfcc_shuffled", STATS13, "the same, 13 statistics a feature"),
    (
        "s5_cep_pitch",
        "functionals_mfcc_shuffled_pitch",
        "",
        "the same with the pitch tracks' statistics (7 statistics)",
    ),
    (
        "s_cep_pitch_stats13",
        "functionals_mfcc_shuffled_pitch",
        STATS13,
        "the same with the pitch tracks and 13 statistics a feature",
    ),
)
ROUND5_MAIN = (
    *(
        (
            d,
            f"{what}, stratified 70/15/15, seeds 10-12",
            f"ser-jax train --config experiments/configs/{cfg}.py {over + ' ' if over else ''}"
            f"--config.seed=10 --seeds 3 --config.train.progress=False --workdir runs/{d}",
        )
        for d, cfg, over, what in ROUND5_SEED
    ),
    (
        "s_cep_pitch_stats13_s13",
        "its check: the pitch tracks and 13 statistics on seeds 13-15 (written down before it ran)",
        f"ser-jax train --config experiments/configs/functionals_mfcc_shuffled_pitch.py {STATS13} "
        "--config.seed=13 --seeds 3 --config.train.progress=False "
        "--workdir runs/s_cep_pitch_stats13_s13",
    ),
    (
        "x_cep_pitch_stats13",
        "the pitch tracks and 13 statistics on LOSO, seeds 0 and 1",
        f"ser-jax cv --config experiments/configs/functionals_mfcc_shuffled_pitch.py {STATS13} "
        "--config.train.progress=False --seeds 2 --workdir runs/x_cep_pitch_stats13",
    ),
)

# The sixth round (an Intel Xeon): fixed vocal-tract-perturbed copies of the training files for
# the functionals models, which the feature cache makes cheap (offline augmentation, cached).
ROUND6_LEVERS = (
    (
        "x_cep_pitch_stats13",
        "base: the cepstral model with the pitch tracks and 13 statistics "
        "(functionals_mfcc_shuffled_pitch.py, 13 statistics; the fifth round's LOSO row)",
    ),
    (
        "x_cep_pitch_stats13_vtlp2",
        "+ 2 fixed copies of each training file, pitch-shifted (VTLP: the filterbank warped by "
        "up to ±2 semitones); the originals stay clean",
    ),
    ("x_cep_vtlp4", "+ 4 such copies"),
    ("x_cep_vtlp2_st4", "+ 2 copies warped by up to ±4 semitones"),
    ("x_cep_vtlp2_st6", "+ 2 copies warped by up to ±6 semitones"),
    ("x_cep_vtlp2_st8", "+ 2 copies warped by up to ±8 semitones"),
)
ROUND6_FUNC = (
    (
        "x_fpitch_off4",
        "base: the log-mel and pitch statistics perceptron (functionals_pitch.py) with its "
        "augmentation as 4 fixed copies of each file (offline), feature cache",
    ),
    ("x_fpitch_off4_vtlp", "+ VTLP (up to ±2 semitones) in every copy"),
)

ROUND7_LEVERS = (
    (
        "x_cep_vtlp2_st8",
        "base: cepstral_vtlp.py (2 copies warped by up to ±8 semitones; the sixth round's row)",
    ),
    ("x_cep7_st12", "copies warped by up to ±12 semitones"),
    ("x_cep7_c4", "4 copies (±8 semitones)"),
    ("x_cep7_speed", "+ speed perturbation in the copies (0.9–1.1, p 0.5)"),
)
ROUND8_LEVERS = (
    (
        "x_cep_vtlp2_st8",
        "base: cepstral_vtlp.py (2 copies warped by up to ±8 semitones; the sixth round's row)",
    ),
    ("x_cep8_mlp", "a hidden layer of 256 (ReLU, dropout 0.3) instead of the linear classifier"),
    ("x_cep8_wd01", "L2 0.1 (base 0.03)"),
    ("x_cep8_wd001", "L2 0.01"),
    ("x_cep8_mixup", "mixup of the utterance statistics (alpha 0.2)"),
    ("x_cep8_ls", "label smoothing 0.1"),
    (
        "x_cep8_tta2",
        "the base's saved models, test-time warps of ±2 semitones (eval.tta_semitones; "
        "the TTA column)",
    ),
    ("x_cep8_tta4", "the base's saved models, test-time warps of ±4 semitones"),
    ("x_cep8_tta6", "the base's saved models, test-time warps of ±6 semitones (chosen)"),
    ("x_cep8_tta48", "the base's saved models, test-time warps of ±4 and ±8 semitones"),
    (
        "x_cep8_mlp_tta6",
        "the hidden-layer row's saved models, test-time warps of ±6 semitones (scored after "
        "the choice)",
    ),
)
ROUND8_FUNC = (
    (
        "x_fpitch_off4_vtlp",
        "base: functionals_pitch.py, 4 offline copies with its augmentation and warps of up to "
        "±2 semitones (the sixth round's row)",
    ),
    (
        "x_fpitch8_base_tta6",
        "the base's saved models, test-time warps of ±6 semitones (the TTA column)",
    ),
    ("x_fpitch8_st6", "copies warped by up to ±6 semitones, test-time warps of ±6 beside"),
)
# The ninth round's screen (speaker 4-fold, seed 0): the CNN-LSTM trained with wide
# vocal-tract warps, as the cepstral model gained from them.
ROUND9_SCREEN = (
    ("x9_kf_base", "base: best.py, speaker 4-fold (2 speakers a fold), seed 0"),
    (
        "x9_kf_vtlp8",
        "+ vocal-tract warps of up to ±8 semitones in training (augment.pitch_shift_prob 0.5)",
    ),
)
SEED8 = "--config.train.progress=False --workdir runs/"
ROUND8_MAIN = (
    (
        "s8_cep_vtlp_tov",
        "cepstral_vtlp.py with the validation files in training (data.train_on_val), the seed "
        "protocol, seeds 10-12 (the rule written down before its runs)",
        "ser-jax train --config experiments/configs/cepstral_vtlp.py "
        f"--config.data.train_on_val=True --config.seed=10 --seeds 3 {SEED8}s8_cep_vtlp_tov",
    ),
    (
        "s8_cep_vtlp_tov_s13",
        "the same, seeds 13-15 (the rule's second half)",
        "ser-jax train --config experiments/configs/cepstral_vtlp.py "
        f"--config.data.train_on_val=True --config.seed=13 --seeds 3 {SEED8}s8_cep_vtlp_tov_s13",
    ),
    (
        "s8_cep_p13_tov",
        "the pitch-and-13-statistics model without copies, validation files in training, "
        "seeds 10-12 (beside the rule)",
        "ser-jax train --config experiments/configs/functionals_mfcc_shuffled_pitch.py "
        f"{STATS13} --config.data.train_on_val=True --config.seed=10 --seeds 3 "
        f"{SEED8}s8_cep_p13_tov",
    ),
    (
        "s8_cep_p13_tov_s13",
        "the same, seeds 13-15",
        "ser-jax train --config experiments/configs/functionals_mfcc_shuffled_pitch.py "
        f"{STATS13} --config.data.train_on_val=True --config.seed=13 --seeds 3 "
        f"{SEED8}s8_cep_p13_tov_s13",
    ),
)
W6 = "'--config.eval.tta_semitones=(-6.0,6.0)'"
NAMED8 = "runs/x_base_s23_w6 runs/x_bilstm_att_s23_w6 runs/x_func_pitch_s23_w6 runs/x_cep6_s23_w6"
ROUND8_MAIN += (
    (
        "s8_cep_vtlp_tov_w6",
        "the rule's seeds 10-12 scored again with test-time warps of ±6 semitones (the "
        "seed-protocol warp rule, written down before it was scored; the TTA row)",
        "ser-jax train --config experiments/configs/cepstral_vtlp.py "
        f"--config.data.train_on_val=True --config.seed=10 --seeds 3 {W6} "
        f"{SEED8}s8_cep_vtlp_tov_w6",
    ),
    (
        "s8_cep_vtlp_tov_s13_w6",
        "the same, seeds 13-15",
        "ser-jax train --config experiments/configs/cepstral_vtlp.py "
        f"--config.data.train_on_val=True --config.seed=13 --seeds 3 {W6} "
        f"{SEED8}s8_cep_vtlp_tov_s13_w6",
    ),
    (
        "x_base_s23_w6",
        "its members, each a copy of the seventh round's run scored again with the warps: "
        "best.py, seeds 2-3",
        "ser-jax cv --config experiments/configs/best.py --config.data.val_count=0 "
        "--config.train.select=last --config.eval.speaker_bn=True --config.seed=2 --seeds 2 "
        f"{W6} --config.train.progress=False --workdir runs/x_base_s23_w6",
    ),
    (
        "x_bilstm_att_s23_w6",
        "bilstm_attention.py, seeds 2-3",
        "ser-jax cv --config experiments/configs/bilstm_attention.py --config.eval.speaker_bn=True "
        f"--config.seed=2 --seeds 2 {W6} --config.train.progress=False "
        "--workdir runs/x_bilstm_att_s23_w6",
    ),
    (
        "x_func_pitch_s23_w6",
        "functionals_pitch.py, seeds 2-3",
        "ser-jax cv --config experiments/configs/functionals_pitch.py --config.eval.speaker_bn=True "
        f"--config.seed=2 --seeds 2 {W6} --config.train.progress=False "
        "--workdir runs/x_func_pitch_s23_w6",
    ),
    (
        "x_cep6_s23_w6",
        "cepstral_vtlp.py's recipe (x_cep6_s23), seeds 2-3",
        "ser-jax cv --config experiments/configs/functionals_mfcc_shuffled_pitch.py "
        f"{STATS13} --config.augment.mode=offline --config.augment.copies=2 "
        "--config.augment.pitch_shift_prob=1.0 '--config.augment.semitones=(-8.0,8.0)' "
        f"--config.seed=2 --seeds 2 {W6} --config.train.progress=False "
        "--workdir runs/x_cep6_s23_w6",
    ),
    (
        "x_committee8_w6",
        "the seventh round's committee (seeds 2-3, run weights 1, 2, 1, 2), every member "
        "scored again with test-time warps of ±6 semitones (the rule written down before it "
        "was scored: its committees' test-time-augmented row)",
        f"ser-jax ensemble --weights 1,2,1,2 --out runs/x_committee8_w6 {NAMED8}",
    ),
    (
        "x_cep8_mlp_s23",
        "the hidden-layer cepstral model (cepstral_vtlp.py, a hidden layer of 256, dropout "
        "0.3), seeds 2-3, test-time warps of ±6 semitones beside",
        "ser-jax cv --config experiments/configs/cepstral_vtlp.py "
        "'--config.model.mlp_hidden=(256,)' --config.model.dropout=0.3 --config.seed=2 "
        f"--seeds 2 {W6} --config.train.progress=False --workdir runs/x_cep8_mlp_s23",
    ),
    (
        "s8_cep_mlp_tov",
        "the fourth rule: the hidden-layer cepstral model, validation files in training, seed "
        "protocol seeds 10-12, test-time warps of ±6 semitones (its TTA row counts)",
        "ser-jax train --config experiments/configs/cepstral_vtlp.py "
        "'--config.model.mlp_hidden=(256,)' --config.model.dropout=0.3 "
        f"--config.data.train_on_val=True --config.seed=10 --seeds 3 {W6} {SEED8}s8_cep_mlp_tov",
    ),
    (
        "s8_cep_mlp_tov_s13",
        "the same, seeds 13-15",
        "ser-jax train --config experiments/configs/cepstral_vtlp.py "
        "'--config.model.mlp_hidden=(256,)' --config.model.dropout=0.3 "
        f"--config.data.train_on_val=True --config.seed=13 --seeds 3 {W6} "
        f"{SEED8}s8_cep_mlp_tov_s13",
    ),
    (
        "x_committee8_mlp",
        "the committee with it in the cepstral member's place (the third rule: its committees' "
        "plain row; each member's warps beside)",
        "ser-jax ensemble --weights 1,2,1,2 --out runs/x_committee8_mlp "
        f"{NAMED8.removesuffix('runs/x_cep6_s23_w6')}runs/x_cep8_mlp_s23",
    ),
)
# The ninth round (an Intel Xeon): seed ensembles on the seed protocol's splits
# (train.seed_offset) and the LOSO-chosen committee on the seed protocol.
MLP9 = (
    "ser-jax train --config experiments/configs/cepstral_vtlp.py "
    "'--config.model.mlp_hidden=(256,)' --config.model.dropout=0.3 "
    f"--config.data.train_on_val=True {W6} --seeds 3"
)
OFFSETS9 = " ".join(f"runs/s9_cep_mlp_tov_o{k}" for k in range(1, 5))
OFFSETS9_S13 = " ".join(f"runs/s9_cep_mlp_tov_s13_o{k}" for k in range(1, 5))
ROUND9_MAIN = (
    (
        "s9_ens5",
        "rule 5: five hidden-layer cepstral models on each of seeds 10-12's splits "
        "(train.seed_offset 0-4; offset 0 is the fourth rule's run), validation files in "
        "training, averaged (its test-time-augmented committees count)",
        f"ser-jax ensemble --out runs/s9_ens5 runs/s8_cep_mlp_tov {OFFSETS9}",
    ),
    (
        "s9_ens5_s13",
        "the same, seeds 13-15",
        f"ser-jax ensemble --out runs/s9_ens5_s13 runs/s8_cep_mlp_tov_s13 {OFFSETS9_S13}",
    ),
    *(
        (
            f"s9_cep_mlp_tov{half}_o{k}",
            f"its member with train.seed_offset={k}, seeds {seeds}",
            f"{MLP9} --config.train.seed_offset={k} --config.seed={seed} "
            f"{SEED8}s9_cep_mlp_tov{half}_o{k}",
        )
        for half, seed, seeds in (("", 10, "10-12"), ("_s13", 13, "13-15"))
        for k in range(1, 5)
    ),
    (
        "s9_committee",
        "rule 6: the committee chosen on LOSO (best.py, BiLSTM-attention, the pitch "
        "functionals, the hidden-layer cepstral model; run weights 1, 2, 1, 2), every member "
        "with the validation files in training and warps of ±6 semitones, seeds 10-12 (its "
        "test-time-augmented committees count)",
        "ser-jax ensemble --weights 1,2,1,2 --out runs/s9_committee runs/s9_best_tov "
        "runs/s9_bilstm_tov runs/s9_fpitch_tov runs/s8_cep_mlp_tov",
    ),
    (
        "s9_committee_s13",
        "the same, seeds 13-15",
        "ser-jax ensemble --weights 1,2,1,2 --out runs/s9_committee_s13 runs/s9_best_tov_s13 "
        "runs/s9_bilstm_tov_s13 runs/s9_fpitch_tov_s13 runs/s8_cep_mlp_tov_s13",
    ),
    *(
        (
            f"s9_{short}_tov{half}",
            f"its member {config}.py, seeds {seeds}",
            f"ser-jax train --config experiments/configs/{config}.py "
            f"--config.data.train_on_val=True {W6} --seeds 3 --config.seed={seed} "
            f"{SEED8}s9_{short}_tov{half}",
        )
        for short, config in (
            ("best", "best"),
            ("bilstm", "bilstm_attention"),
            ("fpitch", "functionals_pitch"),
        )
        for half, seed, seeds in (("", 10, "10-12"), ("_s13", 13, "13-15"))
    ),
)
ROUND7_MAIN = (
    (
        "x_committee7_w1212_s23",
        "the named best with cepstral_vtlp.py in the shuffled cepstral member's place, all "
        "four members' seeds 2-3, run weights 1, 2, 1, 2 (the rule written down before its "
        "runs)",
        "ser-jax ensemble --weights 1,2,1,2 --out runs/x_committee7_w1212_s23 "
        f"{NAMED_S23} runs/x_cep6_s23",
    ),
    (
        "x_committee7_alike_s23",
        "the same four runs alike (run weights 1, 1, 1, 1)",
        f"ser-jax ensemble --out runs/x_committee7_alike_s23 {NAMED_S23} runs/x_cep6_s23",
    ),
    (
        "s7_cep_vtlp",
        "cepstral_vtlp.py, stratified 70/15/15 (the seed protocol), seeds 10-12",
        "ser-jax train --config experiments/configs/cepstral_vtlp.py --config.seed=10 --seeds 3 "
        "--config.train.progress=False --workdir runs/s7_cep_vtlp",
    ),
    (
        "s7_cep_vtlp_s13",
        "cepstral_vtlp.py, the seed protocol, seeds 13-15 (written down before it ran)",
        "ser-jax train --config experiments/configs/cepstral_vtlp.py --config.seed=13 --seeds 3 "
        "--config.train.progress=False --workdir runs/s7_cep_vtlp_s13",
    ),
)

CEP6 = f"ser-jax cv --config experiments/configs/functionals_mfcc_shuffled_pitch.py {STATS13}"
ROUND6_MAIN = (
    (
        "x_cep6_s23",
        "the round's cepstral row with the highest pooled UAR on seeds 0-1, on seeds 2 and 3 "
        "(the rule written down before the round's rows finished)",
        f"{CEP6} <that row's overrides> --config.train.progress=False --config.seed=2 --seeds 2 "
        "--workdir runs/x_cep6_s23",
    ),
    (
        "x_cep6_base_s23",
        "the round's base (no copies) on seeds 2 and 3",
        f"{CEP6} --config.train.progress=False --config.seed=2 --seeds 2 "
        "--workdir runs/x_cep6_base_s23",
    ),
    (
        "x_committee6_cep_s23",
        "best.py and that cepstral row, seeds 2 and 3, averaged probabilities",
        "ser-jax ensemble --out runs/x_committee6_cep_s23 runs/x_base_s23 runs/x_cep6_s23",
    ),
    (
        "x_committee6_cep0_s23",
        "best.py and the base cepstral model, seeds 2 and 3, averaged probabilities",
        "ser-jax ensemble --out runs/x_committee6_cep0_s23 runs/x_base_s23 runs/x_cep6_base_s23",
    ),
)

# (summary key, what) of the evaluations beside the plain pooled ones, as their rows name them.
ENSEMBLE_BESIDE = (
    ("pooled", ""),
    ("pooled_speaker_bn", "speaker-adaptive BatchNorm (own protocol)"),
    ("pooled_balanced", "the balanced decision (÷ training prior)"),
    (
        "pooled_speaker_bn_balanced",
        "speaker-adaptive BatchNorm and the balanced decision (own protocol)",
    ),
    ("pooled_tta", "each member's test-time augmentation"),
)


def cv_extras(run_root: Path) -> list[list[str]]:
    """The beside-rows of a cv run: mean ± std over folds, test-time augmentation, the seeds'
    ensemble (each reported next to the single model, never instead of it)."""
    seeds = run_root / "summary.json"
    if seeds.exists():  # the seed protocol: speaker-adaptive BatchNorm, when scored
        s = json.loads(seeds.read_text())
        rows, bn = [], s.get("speaker_bn")
        if bn:
            clips = {"train": "training clips", "all": "clips in every split"}.get(
                bn["source"], "test clips"
            )
            rows.append(
                [
                    f"↳ with speaker-adaptive BatchNorm from the speaker's {clips} (own protocol)",
                    f"{bn['test_uar'].get('n', 1)} seeds",
                    *(fmt(bn[m], 3) for m in ("test_accuracy", "test_uar", "test_macro_f1")),
                ]
            )
        tta = s.get("tta")
        if tta:
            rows.append(
                [
                    f"↳ with test-time augmentation ({tta_views(tta, its='')})",
                    f"{tta['test_uar'].get('n', 1)} seeds",
                    *(fmt(tta[m], 3) for m in ("test_accuracy", "test_uar", "test_macro_f1")),
                ]
            )
        if "val_accuracy" in s:  # the figure to choose a seed-protocol config by
            rows.append(
                [
                    "↳ the same models on each seed's validation split (to choose by)",
                    f"{s['val_accuracy'].get('n', 1)} seeds",
                    fmt(s["val_accuracy"], 3),
                    fmt(s["val_uar"], 3) if "val_uar" in s else "",
                    "",  # no validation macro-F1 in a seed summary
                ]
            )
        return rows
    ensemble = run_root / "ensemble_summary.json"
    if ensemble.exists():
        s = json.loads(ensemble.read_text())
        rows = []
        for key, what in ENSEMBLE_BESIDE[1:]:
            if key in s:
                row = [f"↳ with {what}", "pooled"]
                rows.append(row + [f"{s[key][m]:.3f}" for m in ("accuracy", "uar", "macro_f1")])
        c = s.get("committees")
        seeds = s.get("protocol") == "seeds"  # its committees are the row itself
        for key, what in ENSEMBLE_BESIDE:
            what = f", {what.removesuffix(' (own protocol)')}" if what else ""
            if c and key in c and not (seeds and key == "pooled"):
                rows.append(
                    [
                        f"↳ committees of one model per run (the runs' k-th seeds){what}",
                        f"{c['count']} committees, {'each its own split' if seeds else 'pooled'}",
                        *(fmt(c[key][m], 3) for m in ("accuracy", "uar", "macro_f1")),
                    ]
                )
        if seeds and c and "val" in c:  # the figure to choose a seed-protocol make-up by
            rows.append(
                [
                    "↳ the same committees on each seed's validation split (to choose by)",
                    f"{c['count']} committees, each its own split",
                    *(fmt(c["val"][m], 3) for m in ("accuracy", "uar", "macro_f1")),
                ]
            )
        rows += weight_grid_rows(s)
        return rows
    path = run_root / "cv_summary.json"
    if not path.exists():
        return []
    s = json.loads(path.read_text())
    keys = ("accuracy", "uar", "macro_f1")
    rows = [
        [
            "↳ mean ± std over folds (and seeds)",
            f"{len(s['per_fold'])} fold runs",
            *(fmt(s["fold_mean"][f"test_{k}"], 3) for k in keys),
        ]
    ]
    if "pooled_tta" in s:
        tta = s["pooled_tta"]
        rows.append(
            [f"↳ with test-time augmentation{tta_note(run_root, s)}", "pooled"]
            + [fmt(tta[f"test_{k}"], 3) for k in keys]
        )
    for key, what in ENSEMBLE_BESIDE[1:]:
        if key in s and key != "pooled_tta":  # test-time augmentation has its row above
            rows.append([f"↳ with {what}", "pooled", *(fmt(s[key][f"test_{k}"], 3) for k in keys)])
    if "ensemble" in s:
        e = s["ensemble"]
        rows.append(
            [f"↳ ensemble of the {len(s['seeds'])} seeds (averaged probabilities)", "pooled"]
            + [f"{e[k]:.3f}" for k in keys]
        )
    return rows


def weight_grid_rows(s: dict) -> list[list[str]]:
    """The rows of ``ser-jax ensemble --weight_grid``: per kind, the committees with run weights
    chosen nested by speaker (the estimate), then with the weights chosen on all speakers
    (optimistic: scored on the files that chose them)."""
    grid = s.get("weight_grid")
    if not grid:
        return []
    rows = []
    values = ",".join(f"{g:g}" for g in grid["grid"])
    for key, what in ENSEMBLE_BESIDE:
        if (g := grid.get(key)) is None:
            continue
        what = f", {what.removesuffix(' (own protocol)')}" if what else ""
        for part, how in (
            ("nested", f"run weights from {{{values}}} chosen on the other speakers' files"),
            (
                "on_all_speakers",
                f"run weights {', '.join(f'{w:g}' for w in g['chosen'])} chosen on all "
                "speakers (optimistic: scored on the files that chose them)",
            ),
        ):
            rows.append(
                [
                    f"↳ committees (the runs' k-th seeds), {how}{what}",
                    f"{len(g[part]['uar']['each'])} committees, pooled",
                    *(fmt(g[part][m], 3) for m in ("accuracy", "uar", "macro_f1")),
                ]
            )
    return rows


def screening_rows(sweep_root: Path) -> str:
    """One row per point of a screening sweep (``cv`` points), pooled over its folds."""
    rows = []
    for point in (
        sorted(p for p in sweep_root.iterdir() if p.is_dir()) if sweep_root.is_dir() else []
    ):
        got = metrics(point)
        if got is None:
            rows.append([point.name, "not finished", "", "", "", ""])
            continue
        rows.append([point.name, got[0], *got[1], provenance(point)])
    return markdown(
        [
            "point (overrides of the base)",
            "runs",
            "test accuracy",
            "test UAR",
            "test macro-F1",
            "made by",
        ],
        rows,
    )


def reproduction_rows(root: Path, kept: dict[str, list[list[str]]] | None = None) -> str:
    rows = []
    for d, what, paper, protocol, differs, cmd in REPRODUCTIONS:
        got = metrics(root / d)
        if got is None and what in (kept or {}):
            rows += kept[what]
            continue
        ours = "not run" if got is None else f"{got[1][0]} acc, {got[1][1]} UAR ({got[0]})"
        cmd = recorded_command(root / d, cmd)
        rows.append([what, paper, protocol, ours, differs, f"`{cmd}`", provenance(root / d)])
    return markdown(
        ["reproduction", "paper", "paper's protocol", "ours", "what differs", "command", "made by"],
        rows,
    )


def main_rows(
    root: Path,
    table: tuple[tuple[str, str, str], ...] = MAIN,
    recorded: bool = True,
    kept: dict[str, list[list[str]]] | None = None,
) -> str:
    rows = []
    for d, what, cmd in table:
        got = metrics(root / d)  # None: not here, or here but not finished (a rerun going on)
        if got is None and what in (kept or {}):
            rows += kept[what]
            continue
        if got is None:
            rows.append([what, "not run at this commit", "", "", "", f"`{cmd}`", ""])
            continue
        cmd = recorded_command(root / d, cmd) if recorded else cmd
        rows.append([what, got[0], *got[1], f"`{cmd}`", provenance(root / d)])
        rows += [[*extra, "", ""] for extra in cv_extras(root / d)]
    return markdown(
        ["experiment", "runs", "test accuracy", "test UAR", "test macro-F1", "command", "made by"],
        rows,
    )


BLOCKS = {
    "repro": reproduction_rows,
    "main": main_rows,
    "levers": lever_rows,
    "xeon_levers": lambda root, kept: lever_rows(root, XEON_LEVERS, kept, balanced=True),
    "xeon_main": lambda root, kept: main_rows(root, XEON_MAIN, kept=kept),
    "round2_levers": lambda root, kept: lever_rows(root, ROUND2_LEVERS, kept, balanced=True),
    "round2_main": lambda root, kept: main_rows(root, ROUND2_MAIN, kept=kept),
    "round3_main": lambda root, kept: main_rows(root, ROUND3_MAIN, kept=kept),
    "round4_main": lambda root, kept: main_rows(root, ROUND4_MAIN, kept=kept),
    "round5_main": lambda root, kept: main_rows(root, ROUND5_MAIN, kept=kept),
    "round6_levers": lambda root, kept: lever_rows(root, ROUND6_LEVERS, kept, balanced=True),
    "round6_func": lambda root, kept: lever_rows(root, ROUND6_FUNC, kept, balanced=True),
    "round6_main": lambda root, kept: main_rows(root, ROUND6_MAIN, kept=kept),
    "round7_levers": lambda root, kept: lever_rows(root, ROUND7_LEVERS, kept, balanced=True),
    "round7_main": lambda root, kept: main_rows(root, ROUND7_MAIN, kept=kept),
    "round8_main": lambda root, kept: main_rows(root, ROUND8_MAIN, kept=kept),
    "round9_main": lambda root, kept: main_rows(root, ROUND9_MAIN, kept=kept),
    "round8_levers": lambda root, kept: lever_rows(
        root, ROUND8_LEVERS, kept, balanced=True, tta=True
    ),
    "round8_func": lambda root, kept: lever_rows(root, ROUND8_FUNC, kept, balanced=True, tta=True),
    "round9_screen": lambda root, kept: lever_rows(
        root, ROUND9_SCREEN, kept, balanced=True, tta=True
    ),
}


def update_readme(text: str, root: Path) -> str:
    """``text`` with each ``results:NAME`` block of ``BLOCKS`` replaced by its table; a row
    whose run directory is not under ``root`` keeps the block's current text."""
    for name, make in BLOCKS.items():
        pattern = re.compile(
            rf"(<!-- results:{name}\b[^\n]*-->\n)(.*?)(<!-- results:end -->)", re.S
        )
        found = pattern.search(text)
        if not found:
            raise SystemExit(f"no <!-- results:{name} ... --> block to update")
        table = make(root, kept=kept_rows(found.group(2)))
        text = pattern.sub(lambda m, t=table: m.group(1) + t + "\n" + m.group(3), text, count=1)
    return text


if __name__ == "__main__":
    args = sys.argv[1:]
    readme = None
    if "--readme" in args:
        i = args.index("--readme")
        readme = Path(args[i + 1])
        del args[i : i + 2]
    root = Path(args[0] if args else "runs")
    if readme is not None:
        readme.write_text(update_readme(readme.read_text(), root))
        print(f"updated {', '.join(BLOCKS)} in {readme}")
    else:
        print(reproduction_rows(root))
        print()
        print(main_rows(root))
        print()
        print(lever_rows(root))
        print()
        print(screening_rows(root / "sweeps" / "screen_levers"))
