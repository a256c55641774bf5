"""``python -m ser_jax VERB ...`` — the same as the ``ser-jax`` command."""

from ser_jax.cli import run

run()
