"""The openSMILE family (``model.name = "opensmile"``): its ``model`` fields only.

It has no Flax network: openSMILE's functionals (eGeMAPSv02 or ComParE_2016, one vector per
file, computed outside jit by the C++ library) feed a multinomial logistic regression whose
inverse regularisation is chosen inside the training speakers; ``ser_jax.classical`` extracts,
caches, trains and scores it, into the same run directories as the networks.
"""

from __future__ import annotations

from typing import Any

from ser_jax.models.registry import register_feature_model

FEATURE_SETS = ("ComParE_2016", "eGeMAPSv02")


def config_fields() -> dict[str, Any]:
    """The openSMILE family's ``model`` fields and their defaults."""
    return {
        "feature_set": "ComParE_2016",  # FEATURE_SETS: openSMILE's functionals per file
        # the logistic regression's inverse L2 strength C, chosen among these by
        # leave-one-speaker-out over the training speakers (pooled UAR)
        "inverse_regularisation": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2),
        # where features are cached, keyed by audio content and feature set
        # ("" = opensmile/ in $SER_JAX_CACHE, default ~/.cache/ser_jax)
        "feature_cache": "",
    }


register_feature_model("opensmile", config_fields, trained_by="ser_jax.classical")
