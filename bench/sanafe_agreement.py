"""spikestack's simulator against SANA-FE 2.2.9 (Boyle et al., IEEE TCAD 44(8), 2025) on the same programs.

SANA-FE is GPL-3.0: it is used here as an outside tool, imported when installed (`pip install sanafe==2.2.9`),
never copied or vendored. Its architecture is described from OUR profile and target (below, `arch_yaml`), not from
its arch files, so both simulators price the same constants on the same mapping:

* each network is a feed-forward chain of IF neurons (NIR IF → dv = 0, du = U - 1: SANA-FE's float LIF with
  leak_decay = 1 and an accumulator dendrite then computes the same integers), compiled by spikestack; SANA-FE gets
  the artifact's integer weights, thresholds, input spikes and core placement (one SANA-FE core per spikestack core;
  input neurons on an extra core of tile (0, 0), the host entry point of docs/simulator.md);
* SANA-FE prices a neuron access (our idle update), an update (our active − idle), spike out, message out, message
  in (time only), synapse, and hop; its `detailed` timing model gives the latency per step.

Usage: `.venv/bin/python bench/sanafe_agreement.py [--steps N] > bench/sanafe_agreement.json` prints JSON, one
entry per network; exits 0 with `{"skipped": ...}` when sanafe is not installed. Latency is compared with both of
SANA-FE's timing models: `detailed` (its default: every message simulated through the mesh, with blocking) and
`simple` (max over cores of the longer pipeline, plus sync). tests/simulators/test_sanafe_agreement.py runs small
cases.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import nir
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PROFILE = "loihi1_sanafe_calibrated"
# (name, layer sizes, connection density, input spike probability per step, target)
NETWORKS = (
    ("256-256-128 dense, 1 tile", (256, 256, 128), 1.0, 0.05, "loihi1"),
    ("100-300-10 dense, small cores", (100, 300, 10), 1.0, 0.10, "loihi1_small_cores"),
    ("64-1000-10 at 10 %, small cores", (64, 1000, 10), 0.1, 0.10, "loihi1_small_cores"),
)


def if_chain(sizes: tuple[int, ...], density: float, seed: int, steps: int) -> nir.NIRGraph:
    """Input → (Affine → IF)+ → Output with random weights at the given density; dt = 1 so IF integrates W·x."""
    rng = np.random.default_rng(seed)
    nodes: list = [nir.Input(input_type={"input": np.array([sizes[0]])})]
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        w = rng.normal(0.0, 1.0 / np.sqrt(a * density), (b, a)) * (rng.random((b, a)) < density)
        nodes += [nir.Affine(weight=w, bias=np.zeros(b)),
                  nir.IF(r=np.ones(b), v_threshold=np.ones(b), v_reset=np.zeros(b))]
    nodes.append(nir.Output(output_type={"output": np.array([sizes[-1]])}))
    graph = nir.NIRGraph.from_list(*nodes)
    graph.metadata = {"spikestack.steps_per_sample": steps, "spikestack.dt": 1.0}
    return graph


def arch_yaml(target, profile, n_inputs: int, extra_core: bool = True) -> str:
    """A SANA-FE architecture from our target's mesh and our profile's constants (J and s). One `input` soma unit
    per input neuron: SANA-FE 2.2.9's input model keeps its spike-train position per soma unit, so input neurons
    sharing a unit do not replay their own trains (measured; its own loihi.yaml declares 1,024 input units)."""
    e, t = profile.energy_pj, profile.time_ns
    sync = ", ".join(f"{n}: {ns * 1e-9:.6e}" for n, ns in zip(profile.barrier_tiles, profile.barrier_ns, strict=True))
    per_tile = target.cores_per_tile + (1 if extra_core else 0)
    hop = (f"energy_north_hop: {e['hop'] * 1e-12:.6e}, latency_north_hop: {t['hop'] * 1e-9:.6e}, "
           f"energy_south_hop: {e['hop'] * 1e-12:.6e}, latency_south_hop: {t['hop'] * 1e-9:.6e}, "
           f"energy_east_hop: {e['hop'] * 1e-12:.6e}, latency_east_hop: {t['hop'] * 1e-9:.6e}, "
           f"energy_west_hop: {e['hop'] * 1e-12:.6e}, latency_west_hop: {t['hop'] * 1e-9:.6e}")
    return f"""architecture:
  name: spikestack_{target.name}
  attributes: {{topology: mesh, width: {target.mesh_x}, height: {target.mesh_y}, link_buffer_size: 16,
               sync_model: table, latency_sync: {{{sync}}}}}
  tile:
    - name: tile[0..{target.mesh_x * target.mesh_y - 1}]
      attributes: {{{hop}}}
      core:
        - name: core[0..{per_tile - 1}]
          attributes: {{buffer_position: soma, buffer_inside_unit: false, max_neurons_supported: 4096}}
          axon_in:
            - name: axon_in
              attributes: {{energy_message_in: 0.0, latency_message_in: {t.get('message_in', 0.0) * 1e-9:.6e}}}
          soma:
            - name: lif
              attributes: {{model: leaky_integrate_fire,
                           energy_access_neuron: {e['neuron_update_idle'] * 1e-12:.6e},
                           latency_access_neuron: {t['neuron_update_idle'] * 1e-9:.6e},
                           energy_update_neuron: {(e['neuron_update'] - e['neuron_update_idle']) * 1e-12:.6e},
                           latency_update_neuron: {(t['neuron_update'] - t['neuron_update_idle']) * 1e-9:.6e},
                           energy_spike_out: {e['spike_out'] * 1e-12:.6e},
                           latency_spike_out: {t['spike_out'] * 1e-9:.6e}}}
            - name: host_input[0..{n_inputs - 1}]
              attributes: {{model: input, energy_access_neuron: 0.0, latency_access_neuron: 0.0,
                           energy_update_neuron: 0.0, latency_update_neuron: 0.0, energy_spike_out: 0.0,
                           latency_spike_out: 0.0}}
          dendrite:
            - name: accumulator
              attributes: {{model: accumulator, energy_update: 0.0, latency_update: 0.0}}
          synapse:
            - name: synapse
              attributes: {{model: current_based, energy_process_spike: {e['synaptic_op'] * 1e-12:.6e},
                           latency_process_spike: {t['synaptic_op'] * 1e-9:.6e}}}
          axon_out:
            - name: axon_out
              attributes: {{energy_message_out: {e['message'] * 1e-12:.6e},
                           latency_message_out: {t['message'] * 1e-9:.6e}}}
"""


def sanafe_run(program, inputs: np.ndarray, profile, timing_model: str = "detailed") -> dict:
    """One sample [T, n_in] of binary input events through SANA-FE on the program's own weights and placement."""
    import sanafe

    target = program.target_spec
    per_tile = target.cores_per_tile + 1
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "arch.yaml"
        path.write_text(arch_yaml(target, profile, program.host_input.size))
        arch = sanafe.load_arch(str(path))
    cores = arch.cores()

    def core_at(x: int, y: int, slot: int):  # SANA-FE tile id = x · height + y (measured), cores tile-major
        return cores[(x * target.mesh_y + y) * per_tile + slot]

    net = sanafe.Network()
    steps = program.steps
    host = net.create_neuron_group("host", program.host_input.size, model_attributes={})
    for i, neuron in enumerate(host.neurons):
        neuron.set_attributes(soma_hw_name=f"host_input[{i}]",
                              model_attributes={"spikes": [bool(s) for s in inputs[:, i]]})
        neuron.map_to_core(core_at(0, 0, target.cores_per_tile))
    groups = {program.host_input.name: host}
    for pop in program.populations:
        groups[pop.name] = net.create_neuron_group(
            pop.name, pop.size, soma_hw_name="lif",
            model_attributes={"threshold": float(pop.vth), "leak_decay": 1.0, "reset_mode": "hard", "reset": 0.0})
    for core in program.cores:
        for i in range(core.lo, core.hi):
            groups[core.pop].neurons[i].map_to_core(core_at(core.x, core.y, core.slot))
    for proj in program.projections:
        w = np.asarray(proj.weight)
        src, dst = groups[proj.src].neurons, groups[proj.dst].neurons
        for j, i in zip(*np.nonzero(w), strict=True):
            src[int(i)].connect_to_neuron(dst[int(j)], {"weight": float(w[j, i])})
    chip = sanafe.SpikingChip(arch)
    chip.load(net)
    start = time.perf_counter()
    r = chip.sim(steps, timing_model=timing_model, perf_trace=True)
    wall = time.perf_counter() - start
    perf = r["perf_trace"]
    input_fires = int(np.asarray(inputs).sum())
    return {"spikes": int(sum(perf["fired"])) - input_fires, "synaptic_events": int(sum(perf["spikes"])),
            "neuron_updates_active": int(sum(perf["updated"])) - input_fires, "hops": int(sum(perf["hops"])),
            "energy_j": float(r["energy"]["total"]), "energy_by_unit_j": {k: float(v) for k, v in r["energy"].items()},
            "latency_s_per_step": float(r["sim_time"]) / steps, "wall_s": wall}


def compare(name: str, sizes, density: float, rate: float, target: str, steps: int, seed: int = 0) -> dict:
    from spikestack.compiler.pipeline import compile_graph
    from spikestack.runtime import reference
    from spikestack.simulators.model import simulate
    from spikestack.simulators.profiles import load_profile

    profile = load_profile(PROFILE)
    program = compile_graph(if_chain(sizes, density, seed, steps), target)
    inputs = (np.random.default_rng(seed + 1).random((1, steps, sizes[0])) < rate).astype(np.int64)
    trace = reference.run_delayed(program, inputs)
    start = time.perf_counter()
    ours = simulate(program, trace, profile)
    wall = time.perf_counter() - start
    theirs = sanafe_run(program, inputs[0], profile)
    simple = sanafe_run(program, inputs[0], profile, "simple")
    return {
        "network": name, "target": target, "cores": ours["cores"], "tiles": ours["tiles"], "steps": steps,
        "spikes": {"spikestack": ours["spikes"], "sanafe": theirs["spikes"]},
        "synaptic_events": {"spikestack": ours["sops"], "sanafe": theirs["synaptic_events"]},
        "neuron_updates_active": {"spikestack": ours["neuron_updates_active"],
                                  "sanafe": theirs["neuron_updates_active"]},
        "hops": {"spikestack": ours["hops"] + ours.get("input_hops", 0), "sanafe": theirs["hops"]},
        "energy_j": {"spikestack": ours["energy_j"], "sanafe": theirs["energy_j"],
                     "diff_pct": 100 * (ours["energy_j"] / theirs["energy_j"] - 1)},
        "latency_s_per_step": {"spikestack": ours["latency_s_per_step"],
                               "sanafe_detailed": theirs["latency_s_per_step"],
                               "sanafe_simple": simple["latency_s_per_step"],
                               "diff_pct": 100 * (ours["latency_s_per_step"] / theirs["latency_s_per_step"] - 1)},
        "wall_s": {"spikestack_simulate": wall, "sanafe_sim": theirs["wall_s"]},
        "energy_breakdown_j": {"spikestack": ours["energy_breakdown_j"], "sanafe": theirs["energy_by_unit_j"]},
    }


def machine() -> str:
    """CPU model and count, OS and Python: the README's table names the machine it was measured on."""
    import os

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()}, python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    try:
        import sanafe  # noqa: F401
    except ImportError:
        print(json.dumps({"skipped": "sanafe is not installed (pip install sanafe==2.2.9)"}))
        return 0
    rows = [compare(*net, steps=args.steps) for net in NETWORKS]
    print(json.dumps({"machine": machine(), "sanafe": "2.2.9", "profile": PROFILE,
                      "networks": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
