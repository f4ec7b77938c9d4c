"""Latency estimator v2: a kernel-level roofline with coefficients fitted per device class on
public on-device measurements (``network`` rows and kernels, ``model`` features and shipped
parameters, ``public`` data, ``fit`` used by ``bench/latency_public.py``)."""
