"""Lava Process and ProcessModel that records the events arriving at its port every step (for stock neurons such
as Lava's LIF, which keep no spike history). See bispike.py for why this folder holds nothing else."""

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol


class EventLogger(AbstractProcess):
    def __init__(self, *, size: int, steps: int, name: str = "logger") -> None:
        super().__init__(shape=(size,), name=name)
        self.a_in = InPort(shape=(size,))
        self.log = Var(shape=(steps, size), init=0)


@implements(proc=EventLogger, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyEventLoggerFixed(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    log: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def run_spk(self) -> None:
        data = self.a_in.recv()
        g = self.time_step - 1
        if g < self.log.shape[0]:
            self.log[g] = data.astype(np.int32)
