"""Dynamic (input-adaptive) inference, survey section 3.5: early exit and token dropping."""

from slimbert.methods.dynamic import early_exit, token_dropping  # noqa: F401
