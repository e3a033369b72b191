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


class TrainingDiverged(SlimbertError):
    """The training loss became NaN or infinite: the run stops at once and publishes nothing."""

    def __init__(self, value: float, step: int, total_steps: int, description: str, learning_rate: float,
                 where: str | None = None):
        self.value, self.step, self.total_steps = value, step, total_steps
        self.description, self.learning_rate, self.where = description, learning_rate, where
        super().__init__(str(self))

    def within(self, where: str) -> "TrainingDiverged":
        """The same error, saying which part of a larger run it happened in (e.g. a recipe step)."""
        return TrainingDiverged(self.value, self.step, self.total_steps, self.description, self.learning_rate, where)

    def __str__(self) -> str:
        where = f" ({self.where})" if self.where else ""
        return (f"non-finite loss ({self.value}) at step {self.step}/{self.total_steps} of {self.description}{where}; "
                f"nothing was published. Likely cause: a learning rate too high for this model ({self.learning_rate:g}; "
                "lower it with --lr or the step's train.learning_rate), or bad input values. The checkpoints before "
                "this step are kept; after changing a setting rerun with --overwrite")
