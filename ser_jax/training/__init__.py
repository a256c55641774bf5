"""Training stage: optimisers (``optim``), the pure jit-compiled steps (``steps``), orbax
checkpoints (``checkpoint``) and the trainer that runs them (``train``)."""
