"""Lava Process and fixed_pt ProcessModel of the integer bi-spike neuron (one population).

Only Process/ProcessModel definitions live in this folder: Lava's model discovery executes every .py file in a
Process's folder (REFERENCE.md §5.2). The arithmetic is `spikestack.runtime.neurons.bispike_step`, the same
function the reference executor runs. `delay` is the number of Lava steps between the host's first write and
this population's first input (one per Dense on the way: Lava's Dense sends last step's buffer, §5.3).
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
from spikestack.compiler.encodings import to_planes
from spikestack.runtime.neurons import BiSpikeTables, bispike_step


class BiSpikeNeurons(AbstractProcess):
    def __init__(self, *, bias, thresholds, carry, amplitude, carry_shift: int, levels: int, state_max: int,
                 delay: int, n_local_steps: int, input_gain, out_encoding: str = "graded", out_planes: int = 1,
                 name: str = "bispike") -> None:
        n = len(bias)
        super().__init__(shape=(n,), name=name, carry_shift=carry_shift, levels=levels, state_max=state_max,
                         delay=delay, out_encoding=out_encoding)
        self.a_in = InPort(shape=(n,))
        self.s_out = OutPort(shape=(n * out_planes,))  # graded payloads, or binary planes (compiler/encodings.py)
        self.input_gain = Var(shape=np.shape(input_gain), init=np.asarray(input_gain, np.int32))
        self.bias = Var(shape=(n,), init=np.asarray(bias, np.int32))
        self.thresholds = Var(shape=np.shape(thresholds), init=np.asarray(thresholds, np.int32))
        self.carry = Var(shape=np.shape(carry), init=np.asarray(carry, np.int32))
        self.amplitude = Var(shape=np.shape(amplitude), init=np.asarray(amplitude, np.int32))
        self.u = Var(shape=(n,), init=0)
        self.s_prev = Var(shape=(n,), init=0)
        self.saturations = Var(shape=(1,), init=0)
        self.spike_log = Var(shape=(n_local_steps, n), init=0)


@implements(proc=BiSpikeNeurons, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyBiSpikeNeuronsFixed(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    bias: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    thresholds: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    carry: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    amplitude: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    u: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    s_prev: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    saturations: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=32)
    spike_log: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    input_gain: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def _send(self, s: np.ndarray, t: int) -> None:
        encoding = self.proc_params["out_encoding"]
        if encoding == "graded":
            self.s_out.send((s * int(self.amplitude[t])).astype(np.int32))
        else:
            self.s_out.send(to_planes(s, encoding, self.proc_params["levels"]).reshape(-1).astype(np.int32))

    def run_spk(self) -> None:
        a_in = self.a_in.recv().astype(np.int64)
        local = self.time_step - 1 - self.proc_params["delay"]
        if local < 0 or local >= self.spike_log.shape[0]:
            self._send(np.zeros(self.u.shape, np.int64), 0)
            return
        steps = self.thresholds.shape[0]
        t = local % steps
        tables = BiSpikeTables(thresholds=self.thresholds.astype(np.int64), carry=self.carry.astype(np.int64),
                               carry_shift=self.proc_params["carry_shift"], levels=self.proc_params["levels"],
                               state_max=self.proc_params["state_max"])
        u, s, saturated = bispike_step(self.u.astype(np.int64), self.s_prev.astype(np.int64),
                                       a_in * int(self.input_gain[t]) + self.bias, t, tables)
        self.u[:] = u
        self.s_prev[:] = s
        self.saturations[0] += int(saturated.sum())
        self.spike_log[local] = s
        self._send(s, t)
