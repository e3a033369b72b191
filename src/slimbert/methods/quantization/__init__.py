"""Quantization (survey section 3.1): dynamic and static int8, QAT (Q8BERT), Q-BERT, TernaryBERT, GOBO, 4-bit."""

from slimbert.methods.quantization import (  # noqa: F401
    dynamic_int8,
    gobo,
    int4,
    qat,
    qbert,
    static_int8,
    ternarybert,
)
