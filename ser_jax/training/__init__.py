"""Training stage: optimisers (``optim``), the pure jit-compiled steps (``steps``), orbax
checkpoints (``checkpoint``), the trainer's state and members (``trainer``), the epoch loop
(``loop``), selection, the test split and ``results.json`` (``results``), the re-scoring of
finished runs (``rescore``), and the public entry ``train`` (``train_and_evaluate``,
``train_members``)."""
