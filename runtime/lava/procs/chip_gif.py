"""Lava Process and fixed_pt ProcessModel of a hybrid program's ``gif`` chip layer (SpikeLLM's generalized
integrate-and-fire, compiler/hybrid/ir.py): K = `steps` neuron steps per call, the charge u reset every call
from the host's input, s_k = min(u, L − 1), u ← u − s_k, payload s_k (graded, unsigned). The arithmetic is
`spikestack.runtime.neurons.gif_charge` / `gif_step`, the functions the numpy reference runs. See bispike.py
for why this folder holds only Process/Model definitions.

Every call runs exactly K Lava steps, so `(time_step − 1) % K` is the step within the call; the input
(`chip_io.ChipInput`) arrives on step 0.
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
from spikestack.runtime.neurons import gif_charge, gif_step


class ChipGIF(AbstractProcess):
    """n = positions × width neurons (every position its own copy)."""

    def __init__(self, *, size: int, steps: int, levels: int, name: str = "chip_gif") -> None:
        super().__init__(shape=(size,), name=name, steps=int(steps), levels=int(levels))
        self.a_in = InPort(shape=(size,))
        self.s_out = OutPort(shape=(size,))  # graded payload s_k in 0 … L − 1
        self.u = Var(shape=(size,), init=0)
        self.payload = Var(shape=(steps, size), init=0)  # this call's payloads, one row per step
        self.saturations = Var(shape=(1,), init=0)


@implements(proc=ChipGIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyChipGIFFixed(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    u: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    payload: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    saturations: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=32)

    def run_spk(self) -> None:
        x = self.a_in.recv().astype(np.int64)
        k = (self.time_step - 1) % self.proc_params["steps"]
        u = self.u.astype(np.int64)
        if k == 0:
            u, negative = gif_charge(x)
            self.saturations[0] += int(negative.sum())
        u, s = gif_step(u, self.proc_params["levels"])
        self.u[:] = u
        self.payload[k] = s
        self.s_out.send(s.astype(np.int32))
