"""Reports: corpus exploration, figures and tables written next to the numbers."""
