"""hls4ml sweeps: the applied configuration read back from generated projects, an FPGA resource and latency
estimator, synthesis-report importers, and the Optuna sweep behind the ``hls4ml_sweep`` job kind."""
