"""Measurements around the study: throughput benchmarks, the GPU window's pick of a training path,
the loss-plateau route check and the fast-path agreement check."""
