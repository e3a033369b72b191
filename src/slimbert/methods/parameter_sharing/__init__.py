"""Parameter sharing (survey section 3.6): cross-layer weight sharing.

Methods (one file per registered name): ``share-layers`` (ALBERT). Shared modules are the same module
objects under several layer paths: trained once, stored once, counted once, tied again on load.
"""

from slimbert.methods.parameter_sharing import share_layers  # noqa: F401
