"""Research tools over finished runs: committees, weight grids, nested choices, model cards.
The core (data, front-end, models, training, evaluation, serving) never imports this package;
the ``ensemble`` and ``package`` verbs do."""
