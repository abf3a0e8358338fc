"""The light list of pass names (for the CLI) is the pipelines' own order."""

from spikestack.compiler.hybrid.compile import HYBRID_PASSES
from spikestack.compiler.pass_names import CHAIN_PASSES
from spikestack.compiler.pass_names import HYBRID_PASSES as LIGHT_HYBRID
from spikestack.compiler.pipeline import PASS_NAMES


def test_pass_names_match_the_pipelines():
    assert CHAIN_PASSES == PASS_NAMES
    assert LIGHT_HYBRID == HYBRID_PASSES
