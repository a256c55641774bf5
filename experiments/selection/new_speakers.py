"""The candidates for recognising new speakers (issue: speaker adaptation, an openSMILE
baseline, choices that do not fit the test speakers), written down before the openSMILE
member's runs and before the networks' second seed.

Chosen by ``ser-jax select`` exactly as ``default_model.py``: for each test speaker, the
(candidate, view) with the highest pooled UAR on the other 7 speakers' out-of-fold
predictions scores that speaker; the nested pooled UAR is the headline. It is made once per
seed (seed 0: ``results/loso``, seed 1: ``results/loso_s1``) and reported as mean ± std over
the two, for both protocols: plain (each file alone) and speaker-adapted (each member adapts
to the test speaker's own recordings: BatchNorm statistics for the networks, per-speaker
standardisation for the statistics models and openSMILE). Adaptation is a protocol, not a
choice: it needs the speaker's recordings, which a plain use does not have.

The openSMILE member: ComParE_2016 functionals (6,373 per file), standardised, multinomial
logistic regression whose inverse regularisation C is chosen inside the training speakers
(``experiments/configs/opensmile_compare.py``). It has no test-time warps: its ``tta`` view is
its plain one.

Choices (at most six candidates; weights fixed here, not fitted):
- the current default (committee_mlp of ``default_model.py``);
- openSMILE alone;
- the current default plus openSMILE at weight 2;
- the current default with openSMILE in place of the hand-written pitch statistics;
- all five members alike;
- the two networks plus openSMILE, alike.
"""

MEMBERS = {
    "cnn_lstm": "best.py",
    "bilstm_attention": "bilstm_attention.py",
    "functionals_pitch": "functionals_pitch.py",
    "cepstral_mlp": "cepstral_vtlp.py + model.mlp_hidden=(256,), model.dropout=0.3",
    "opensmile_compare": "opensmile_compare.py",
}

CANDIDATES = {
    "committee_mlp": {
        "cnn_lstm": 1,
        "bilstm_attention": 2,
        "functionals_pitch": 1,
        "cepstral_mlp": 2,
    },
    "opensmile": {"opensmile_compare": 1},
    "committee_plus_opensmile": {
        "cnn_lstm": 1,
        "bilstm_attention": 2,
        "functionals_pitch": 1,
        "cepstral_mlp": 2,
        "opensmile_compare": 2,
    },
    "committee_opensmile_for_pitch": {
        "cnn_lstm": 1,
        "bilstm_attention": 2,
        "opensmile_compare": 1,
        "cepstral_mlp": 2,
    },
    "five_alike": {
        "cnn_lstm": 1,
        "bilstm_attention": 1,
        "functionals_pitch": 1,
        "cepstral_mlp": 1,
        "opensmile_compare": 1,
    },
    "networks_opensmile": {"cnn_lstm": 1, "bilstm_attention": 1, "opensmile_compare": 1},
}

VIEWS = ("plain", "tta")
