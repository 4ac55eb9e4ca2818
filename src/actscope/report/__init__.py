"""Views of a run directory: terminal, HTML, comparison, model card, exports."""
