"""Lava Process and fixed_pt ProcessModel of a hybrid program's ``bispike`` chip layer (SpikeLM's elastic
bi-spike, compiler/hybrid/ir.py): one neuron step per call, step index t = call mod period, state reset at t = 0,
payload a_t·s (graded, signed). The arithmetic is `spikestack.runtime.neurons.bispike_step`, the function the
numpy reference (`runtime/hybrid/chip.py`) runs. See bispike.py for why this folder holds only Process/Model
definitions; that older process serves the chain programs and has a different schedule.

The call index lives on the neuron (`call`, incremented every step) rather than being derived from Lava's
time_step, so the host can restart a sequence on a network it keeps (it sets `call`).
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
from spikestack.runtime.neurons import BiSpikeTables, bispike_step


class ChipBiSpike(AbstractProcess):
    """n = positions × width neurons (every position its own copy). Tables are constants (proc_params)."""

    def __init__(self, *, size: int, thresholds: np.ndarray, carry: np.ndarray, carry_shift: int, levels: int,
                 amplitude: np.ndarray, period: int, state_max: int, first_call: int = 0,
                 name: str = "chip_bispike") -> None:
        super().__init__(shape=(size,), name=name, thresholds=np.asarray(thresholds, np.int64),
                         carry=np.asarray(carry, np.int64), carry_shift=int(carry_shift), levels=int(levels),
                         amplitude=np.asarray(amplitude, np.int64), period=int(period), state_max=int(state_max))
        self.a_in = InPort(shape=(size,))
        self.s_out = OutPort(shape=(size,))  # graded payload a_t·s
        self.u = Var(shape=(size,), init=0)
        self.s_prev = Var(shape=(size,), init=0)
        self.payload = Var(shape=(1, size), init=0)  # this call's payload (one step per call)
        self.call = Var(shape=(1,), init=first_call)  # the executor's call index of the next step
        self.saturations = Var(shape=(1,), init=0)


@implements(proc=ChipBiSpike, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyChipBiSpikeFixed(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    u: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    s_prev: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    payload: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    call: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=32)
    saturations: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=32)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        p = self.proc_params
        self.tables = BiSpikeTables(thresholds=p["thresholds"], carry=p["carry"], carry_shift=p["carry_shift"],
                                    levels=p["levels"], state_max=p["state_max"])

    def run_spk(self) -> None:
        x = self.a_in.recv().astype(np.int64)
        t = int(self.call[0]) % self.proc_params["period"]
        u, s, saturated = bispike_step(self.u.astype(np.int64), self.s_prev.astype(np.int64), x, t, self.tables)
        self.u[:] = u
        self.s_prev[:] = s
        self.payload[0] = s * int(self.proc_params["amplitude"][t])
        self.call[0] += 1
        self.saturations[0] += int(saturated.sum())
        self.s_out.send(self.payload[0].astype(np.int32))
