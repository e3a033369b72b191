"""Quiet transformers' own reporting: slimbert prints what matters to its users."""

from __future__ import annotations


def quiet_transformers() -> None:
    """Silence transformers' load reports and progress bars; slimbert prints what matters."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
