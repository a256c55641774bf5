"""Models: Flax (linen) modules only, no training logic, registered by name (``model.name``).

One module per family, each with its modules, its ``model`` config fields and its factory:
``cnn_lstm`` (:class:`CNNLSTM`), ``functionals`` (:class:`Functionals`) and ``tdnn``
(:class:`TDNN`), and ``opensmile`` (fields only: a linear classifier trained by
``ser_jax.classical``); their shared pieces in ``layers`` (convolution block, poolings, MixStyle,
gradient reversal) and ``statistics`` (utterance statistics over the valid frames), and the
registry in ``registry``.

A new model is one module plus a factory registered with
``@register_model("name", fields=config_fields)`` that builds it from the ``model`` config
section, imported here so that it registers.
"""

from __future__ import annotations

from ser_jax.models.cnn_lstm import CNNLSTM, POOLINGS, check_mixstyle
from ser_jax.models.functionals import Functionals, cached_input
from ser_jax.models.layers import (
    ACTIVATIONS,
    AttentionPool,
    ConvBlock,
    attention_pool,
    check_activation,
    check_min_frames,
    last_valid_step,
    lstm_scan,
    max_pool_valid,
    mix_statistics,
    mix_style,
    pooled_length,
    reverse_gradient,
    style_statistics,
)
from ser_jax.models.opensmile import FEATURE_SETS
from ser_jax.models.registry import (
    FEATURE_MODELS,
    FIELDS,
    MODELS,
    ModelFactory,
    create_model,
    is_feature_model,
    model_fields,
    model_section,
    register_feature_model,
    register_model,
    shared_fields,
)
from ser_jax.models.statistics import (
    FUNCTIONALS,
    NAMED_STATISTICS,
    FunctionalsNorm,
    check_statistics,
    check_tracks,
    frame_vectors,
    masked_functionals,
)
from ser_jax.models.tdnn import TDNN, TDNNLayer, tdnn_embedding

__all__ = [
    "ACTIVATIONS",
    "FEATURE_MODELS",
    "FEATURE_SETS",
    "CNNLSTM",
    "FIELDS",
    "FUNCTIONALS",
    "MODELS",
    "NAMED_STATISTICS",
    "POOLINGS",
    "TDNN",
    "AttentionPool",
    "ConvBlock",
    "Functionals",
    "FunctionalsNorm",
    "ModelFactory",
    "TDNNLayer",
    "attention_pool",
    "cached_input",
    "check_activation",
    "check_min_frames",
    "check_mixstyle",
    "check_statistics",
    "check_tracks",
    "create_model",
    "is_feature_model",
    "frame_vectors",
    "last_valid_step",
    "lstm_scan",
    "masked_functionals",
    "max_pool_valid",
    "mix_statistics",
    "mix_style",
    "model_fields",
    "model_section",
    "pooled_length",
    "register_feature_model",
    "register_model",
    "reverse_gradient",
    "shared_fields",
    "style_statistics",
    "tdnn_embedding",
]
