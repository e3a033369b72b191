"""Quantization (survey section 3.1).

Methods (one file, or a subpackage when the method owns private files, per registered name):
``dynamic-int8``, ``static-int8``, ``qat-int8`` (Q8BERT), ``qbert/`` (Q-BERT), ``ternary/``
(TernaryBERT), ``gobo/`` (GOBO), ``int4-weight-only``. Machinery shared by several of them (int8
and packed module kinds, fake quantization, calibration, the accuracy gate) lives in :mod:`.common`.
"""

from slimbert.methods.quantization import (  # noqa: F401
    dynamic_int8,
    gobo,
    int4_weight_only,
    qat_int8,
    qbert,
    static_int8,
    ternary,
)
