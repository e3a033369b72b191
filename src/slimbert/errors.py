"""User-facing errors.

Every error a user can cause (bad path, wrong model type, malformed recipe, missing data,
label mismatch) is raised as a :class:`SlimbertError` whose message says what is wrong and how
to fix it. The CLI prints these messages without a traceback; anything else is a bug.
"""

from __future__ import annotations


class SlimbertError(Exception):
    """Base class for errors caused by user input or the environment, not by a bug."""


class ConfigError(SlimbertError):
    """A recipe, method config or setting is invalid."""


class DataError(SlimbertError):
    """Task data is missing or malformed."""


class ModelLoadError(SlimbertError):
    """A model could not be found or is of an unsupported kind."""
