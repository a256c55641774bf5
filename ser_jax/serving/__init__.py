"""Serving: a run directory or a shipped model → a model ready to score audio (``restore``),
labels for recordings (``predict``), and serialised StableHLO (``export``)."""
