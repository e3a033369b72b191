"""Pruning (survey section 3.2): unstructured masks and structured physical removal."""
