"""Feature models outside jit: openSMILE functionals (``features``), a linear classifier on
them (``linear``), its training into a run directory (``fit``) and its restored form for
scoring (``model``). ``ser_jax.protocols`` trains a config whose ``model.name`` is a feature
model here; ``ser_jax.serving.restore.load_model`` restores it."""
