"""The candidates for the shipped default, written down before their LOSO runs.

The default of ``ser-jax predict`` is chosen by the nested mechanism (``ser-jax select``): for
each test speaker, every choice below is made on the pooled out-of-fold predictions of the
other 7 speakers only, and that speaker is scored with the choice it got. The nested pooled
UAR is the figure the README and the model cards lead with.

Each member is a shipped recipe (its weights trained on all 8 speakers are in the package), so
the winner ships without retraining. The member runs are LOSO, seed 0, made by
``experiments/selection/loso_members.sh`` (commands there); every run also scores its test
speaker with vocal-tract warps of ±6 semitones beside the plain figure.

Choices (at most six candidates each):
- model: the single CNN-LSTM, or one of four committees of the shipped members;
- test-time views: plain, or with each member's warps (``tta``).
Speaker adaptation (BatchNorm statistics / standardisation from the test speaker's own clips)
is not chosen: it needs a speaker's recordings, so it is reported beside as its own protocol.
"""

MEMBERS = {
    "cnn_lstm": "best.py",
    "bilstm_attention": "bilstm_attention.py",
    "functionals_pitch": "functionals_pitch.py",
    "cepstral_mlp": "cepstral_vtlp.py + model.mlp_hidden=(256,), model.dropout=0.3",
    "cepstral_vtlp": "cepstral_vtlp.py",
    "cepstral_shuffled": "functionals_mfcc_shuffled.py",
}

CANDIDATES = {
    "cnn_lstm": {"cnn_lstm": 1},
    "committee_weighted": {
        "cnn_lstm": 1,
        "bilstm_attention": 2,
        "functionals_pitch": 1,
        "cepstral_shuffled": 2,
    },
    "committee_vtlp": {
        "cnn_lstm": 1,
        "bilstm_attention": 2,
        "functionals_pitch": 1,
        "cepstral_vtlp": 2,
    },
    "committee_mlp": {
        "cnn_lstm": 1,
        "bilstm_attention": 2,
        "functionals_pitch": 1,
        "cepstral_mlp": 2,
    },
    "committee_mlp_alike": {
        "cnn_lstm": 1,
        "bilstm_attention": 1,
        "functionals_pitch": 1,
        "cepstral_mlp": 1,
    },
}

VIEWS = ("plain", "tta")
