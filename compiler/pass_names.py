"""The names of the compiler's passes, in order, without importing the passes (the CLI's --help and
--dump-after choices need them in well under a second; `compiler/pipeline.py` and `compiler/hybrid/compile.py`
are checked against them in tests/compiler/test_pass_names.py)."""

CHAIN_PASSES = ("check_neurons", "fold_amplitudes", "quantize", "lower_spikes", "partition", "place", "cut_host")
HYBRID_PASSES = ("cut", "calibrate", "quantize", "host", "partition", "place")
