"""Lava Processes and fixed_pt ProcessModels at the host ↔ chip boundary of a hybrid program's chip layer
(runtime/lava/hybrid_chip.py). See bispike.py for why this folder holds only Process/ProcessModel definitions.

A call of a chip layer is `steps` Lava time steps (the layer's neuron steps per call); every call runs exactly
that many, so `(time_step - 1) % steps` is the step within the call for every process of the network.
"""

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol


class ChipInput(AbstractProcess):
    """The host's write of one call: `x` (set with Var.set between calls) is sent on the call's first step and
    zeros on the others, so a neuron sees each host input exactly once."""

    def __init__(self, *, x: np.ndarray, steps: int, name: str = "chip_input") -> None:
        x = np.asarray(x, np.int32).reshape(-1)
        super().__init__(shape=x.shape, name=name, steps=steps)
        self.s_out = OutPort(shape=x.shape)
        self.x = Var(shape=x.shape, init=x)


@implements(proc=ChipInput, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyChipInputFixed(PyLoihiProcessModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    x: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def run_spk(self) -> None:
        first = (self.time_step - 1) % self.proc_params["steps"] == 0
        self.s_out.send(self.x.astype(np.int32) if first else np.zeros_like(self.x, dtype=np.int32))


class StepLog(AbstractProcess):
    """Records what arrives at its port on every step of the current call: log[k] for step k (for stock neurons
    such as Lava's LIF, which keep no spike history)."""

    def __init__(self, *, size: int, steps: int, name: str = "step_log") -> None:
        super().__init__(shape=(size,), name=name, steps=steps)
        self.a_in = InPort(shape=(size,))
        self.log = Var(shape=(steps, size), init=0)


@implements(proc=StepLog, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyStepLogFixed(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    log: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def run_spk(self) -> None:
        self.log[(self.time_step - 1) % self.proc_params["steps"]] = self.a_in.recv().astype(np.int32)


class DendriteSum(AbstractProcess):
    """The projection's destination: integrates the dendritic input of one call.

    A stock Dense/Sparse delivers at step k what its sources sent at step k − 1 (REFERENCE.md §5.3). So the
    arrival at a call's step 0 belongs to the previous call (the host already read it from the synapse's
    `a_buff`) and is dropped, `acc` = Σ arrivals of steps 1 … steps − 1, and the host adds the synapse's
    `a_buff` (the last step's W·s, still in flight) when it reads the call's accumulator.
    """

    def __init__(self, *, size: int, steps: int, name: str = "dendrite_sum") -> None:
        super().__init__(shape=(size,), name=name, steps=steps)
        self.a_in = InPort(shape=(size,))
        self.acc = Var(shape=(size,), init=0)


@implements(proc=DendriteSum, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyDendriteSumFixed(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    acc: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def run_spk(self) -> None:
        a_in = self.a_in.recv().astype(np.int32)
        if (self.time_step - 1) % self.proc_params["steps"] == 0:
            self.acc[:] = 0
        else:
            self.acc[:] += a_in


class PlaneEncoder(AbstractProcess):
    """The axon side of a binary encoding (compiler/encodings.py): a graded unsigned level s becomes binary events
    on P planes (unary: [s > k]; bit-serial: bit b of s), sent plane-major in the same step. It stands for the
    neuron's spike-out stage, which on the chip emits these events itself; the synapses of plane p hold the
    plane's weight (bit-serial: weight_exp = b)."""

    def __init__(self, *, size: int, encoding: str, max_level: int, name: str = "plane_encoder") -> None:
        from spikestack.compiler.encodings import unsigned_plane_scales

        planes = int(unsigned_plane_scales(encoding, max_level).size)
        super().__init__(shape=(size,), name=name, encoding=encoding, max_level=int(max_level))
        self.a_in = InPort(shape=(size,))
        self.s_out = OutPort(shape=(planes * size,))


@implements(proc=PlaneEncoder, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyPlaneEncoderFixed(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)

    def run_spk(self) -> None:
        from spikestack.compiler.encodings import to_unsigned_planes

        s = self.a_in.recv().astype(np.int64)
        planes = to_unsigned_planes(s, self.proc_params["encoding"], self.proc_params["max_level"])
        self.s_out.send(planes.reshape(-1).astype(np.int32))
