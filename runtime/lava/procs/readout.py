"""Lava Process and fixed_pt ProcessModel of the token readout accumulator (see bispike.py for the folder rule)."""

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
from spikestack.runtime.neurons import readout_step


class TokenReadout(AbstractProcess):
    def __init__(self, *, size: int, steps: int, state_max: int, delay: int, n_tokens: int, input_gain,
                 name: str = "readout") -> None:
        super().__init__(shape=(size,), name=name, steps=steps, state_max=state_max, delay=delay)
        self.a_in = InPort(shape=(size,))
        self.input_gain = Var(shape=np.shape(input_gain), init=np.asarray(input_gain, np.int32))
        self.acc = Var(shape=(size,), init=0)
        self.saturations = Var(shape=(1,), init=0)
        self.readout_log = Var(shape=(n_tokens, size), init=0)


@implements(proc=TokenReadout, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyTokenReadoutFixed(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    acc: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    saturations: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=32)
    readout_log: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    input_gain: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def run_spk(self) -> None:
        a_in = self.a_in.recv().astype(np.int64)
        steps = self.proc_params["steps"]
        local = self.time_step - 1 - self.proc_params["delay"]
        if local < 0 or local >= self.readout_log.shape[0] * steps:
            return
        t = local % steps
        acc, saturated = readout_step(self.acc.astype(np.int64), a_in * int(self.input_gain[t]), t,
                                      self.proc_params["state_max"])
        self.acc[:] = acc
        self.saturations[0] += int(saturated.sum())
        if t == steps - 1:
            self.readout_log[local // steps] = acc
