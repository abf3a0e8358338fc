"""Exception families. Each message names the node/layer/file, the limit and the value; the CLI prints it as one
line and exits with code 2 (a traceback only with --debug)."""


class SpikestackError(Exception):
    """Base of every error a user can cause with bad input."""


class NIRFormatError(SpikestackError, ValueError):
    """A NIR file or node that spikestack cannot accept."""


class CompileError(SpikestackError):
    """The compiler cannot lower a graph (unsupported op, inconsistent graph)."""


class TargetLimitError(CompileError):
    """A layer does not fit the target's limits."""


class ArtifactError(SpikestackError):
    """A compiled artifact is missing, corrupt or of another version."""


class VerificationError(SpikestackError):
    """Two backends disagree; the message names the first diverging layer, step and neuron."""
