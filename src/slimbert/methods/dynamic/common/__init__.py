"""Shared pieces of the dynamic-inference methods."""
