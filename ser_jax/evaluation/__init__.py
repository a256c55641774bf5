"""Evaluation stage: metrics from predictions (``metrics``), the one scorer of clips used by
training and by restored models (``scoring``), and summaries over runs (``tables``)."""
