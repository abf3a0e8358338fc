"""spikestack: compile, verify and simulate spiking language models on Loihi-style cores."""
__version__ = "0.1.0"
