"""Model families by CLI name and where their train functions live: data only, so that `spikestack train --help`
lists them without importing torch (`registry.py` does the lazy imports)."""

# family → (module, train function)
FAMILIES: dict[str, tuple[str, str]] = {
    "bispike-mlp": ("spikestack.models.bispike_mlp", "train"),
    "spikegpt": ("spikestack.models.spikegpt", "train"),
    "spikellm": ("spikestack.models.spikellm", "train"),
    "spikelm-enc": ("spikestack.models.spikelm", "train_encoder"),
    "spikelm-dec": ("spikestack.models.spikelm", "train_decoder"),
}
FAMILY_NAMES = tuple(FAMILIES)
