"""Lava Process and fixed_pt ProcessModel that plays the host: writes each step's input currents."""

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol


class HostInput(AbstractProcess):
    """data [steps, n]: row g-1 is sent at Lava step g; zeros after the last row."""

    def __init__(self, *, data, name: str = "host_input") -> None:
        data = np.asarray(data, np.int32)
        super().__init__(shape=(data.shape[1],), name=name)
        self.s_out = OutPort(shape=(data.shape[1],))
        self.data = Var(shape=data.shape, init=data)


@implements(proc=HostInput, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyHostInputFixed(PyLoihiProcessModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    data: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def run_spk(self) -> None:
        g = self.time_step - 1
        row = self.data[g] if g < self.data.shape[0] else np.zeros(self.data.shape[1], np.int32)
        self.s_out.send(row.astype(np.int32))
