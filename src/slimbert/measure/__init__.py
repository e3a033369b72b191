"""Measurement: parameters, sizes, FLOPs, latency, and the per-component profile."""

from slimbert.measure.flops import flops_per_example
from slimbert.measure.latency import LatencyStats, measure_latency
from slimbert.measure.size import count_parameters, weight_bytes

__all__ = ["LatencyStats", "count_parameters", "flops_per_example", "measure_latency", "weight_bytes"]
