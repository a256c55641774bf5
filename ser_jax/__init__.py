"""ser_jax: speech emotion recognition in JAX/Flax.

The data flows one way, one subpackage or module per stage:
corpora → audio loading → splits → batches (``ser_jax.data``) → on-device
augmentation and log-mel (``ser_jax.frontend.augment``, ``ser_jax.frontend.logmel``) → model
(``ser_jax.models``) → train step (``ser_jax.training.train``) → evaluation
(``ser_jax.evaluation.metrics``) → reports (``ser_jax.reports``).
"""

__version__ = "0.1.0"
