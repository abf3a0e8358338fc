"""The `spikestack` argument parser (the commands themselves are in `cli.py`).

Every number a user types is checked here by an argparse `type=` function whose message gives the allowed range,
and a parse error is one line `spikestack: error: …` with exit code 2, like every other user error (argparse's
default prints a usage block first). Bounds that depend on the artifact (how many tokens the validation text
holds for its context) are checked by the command, with the limit in the message.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable

EXIT_USER_ERROR = 2
DEFAULT_VERIFY_BACKENDS = "torch,reference,lava"
TRAIN_STEPS_MAX = 1_000_000
SEED_MAX = 2**32 - 1  # numpy and torch both take any seed in 0..2^32-1
COMPILE_STEPS_MAX = 100_000  # steps per sample of a foreign LIF graph (1 s at dt = 10 us)
DT_MAX_S = 1.0
CALIBRATE_MAX = 16_384  # validation windows; the text after the calibration offset holds 25,898 positions
GENERATE_TOKENS_MAX = 10_000  # one program run per token: on Lava about a second each
PROMPT_MAX_CHARS = 4_096
DASK_WORKERS_MAX = 1_024  # local Dask worker processes; more than the machine's cores only thrash


class CliParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit 2 (subparsers inherit the class)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"spikestack: error: {' '.join(message.split())}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR)


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def integer(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """argparse type: an integer in lo..hi (hi None: no upper bound here; the command checks the exact one)."""
    allowed = f"in {lo}..{hi}" if hi is not None else f">= {lo}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer {allowed}, got {_shown(text)}") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be an integer {allowed}, got {value}")
        return value

    return parse


def seconds(text: str) -> float:
    """argparse type for --dt: a finite time step in (0, DT_MAX_S] seconds (NaN, inf and <= 0 refused)."""
    allowed = f"a finite number of seconds in (0, {DT_MAX_S:g}]"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {allowed}, got {_shown(text)}") from None
    if not math.isfinite(value) or not 0.0 < value <= DT_MAX_S:
        raise argparse.ArgumentTypeError(f"must be {allowed}, got {value}")
    return value


def prompt(text: str) -> str:
    if len(text) > PROMPT_MAX_CHARS:
        raise argparse.ArgumentTypeError(f"must be at most {PROMPT_MAX_CHARS} characters, got {len(text)}")
    return text


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help shows its default (where it has one), once: not where its text already says it, not
    "None" for required options and flags (argparse would print "(default: None)" and "(default: False)")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default" in text or action.required or action.default in (None, False):
            return text
        return super()._get_help_string(action)


def _add(sub, name: str, help_text: str, *, force: str | None = None) -> argparse.ArgumentParser:
    """A subcommand that also accepts --debug and --quiet after its name (and --force where it writes files)."""
    s = sub.add_parser(name, help=help_text, description=help_text, formatter_class=_Formatter)
    s.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks for errors")
    s.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS,
                   help="no progress bars (they show only on a terminal anyway)")
    if force:
        s.add_argument("--force", action="store_true", help=force)
    return s


def _family_option(s: argparse.ArgumentParser) -> None:
    s.add_argument("--family", metavar="F", help="force the layout of a published checkpoint (a family such as "
                   "spikegpt or spikellm, or a layout name such as hf-llama); default: detected from its keys")


def _text_option(s: argparse.ArgumentParser, use: str) -> None:
    s.add_argument("--text", metavar="FILE", help=f"UTF-8 text file {use}, encoded by the program's tokenizer "
                   "(default: the shipped corpus's validation split)")


def _dask_options(s: argparse.ArgumentParser, workers: bool = True) -> argparse._MutuallyExclusiveGroup:
    """--scheduler ADDRESS (an existing Dask cluster) or --workers N (a local one): never both (one line, exit 2).
    sweep keeps its own --workers (local processes) in the same exclusive group."""
    group = s.add_mutually_exclusive_group()
    group.add_argument("--scheduler", metavar="ADDRESS", help="shard the work over the Dask cluster whose scheduler "
                       "listens at ADDRESS (tcp://host:8786); results equal a one-process run")
    if workers:
        group.add_argument("--workers", type=integer(1, DASK_WORKERS_MAX), metavar="N",
                           help="shard the work over a local Dask cluster of N one-thread worker processes")
    return group


def build_parser() -> CliParser:
    """Imports nothing heavy (no torch, onnx or Lava), so that --help answers at once."""
    from spikestack import __version__
    from spikestack.compiler.pass_names import CHAIN_PASSES as PASS_NAMES
    from spikestack.compiler.pass_names import HYBRID_PASSES
    from spikestack.models.families import FAMILY_NAMES
    from spikestack.sweep import MAX_WORKERS

    p = CliParser(prog="spikestack", formatter_class=_Formatter,
                  description="Compile spiking language models (and NIR networks) onto Loihi-style cores, prove "
                              "them bit-exact across backends and tell their energy per token.")
    p.add_argument("--version", action="version", version=f"spikestack {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars (they show only on a terminal)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = _add(sub, "train", "train a model family on pydoc_data.topics and save a checkpoint",
             force="replace an existing checkpoint file")
    s.add_argument("family", choices=FAMILY_NAMES, help="model family")
    s.add_argument("--steps", type=integer(1, TRAIN_STEPS_MAX), default=3000, help="optimiser steps")
    s.add_argument("--seed", type=integer(0, SEED_MAX), default=0, help="random seed (data order, init)")
    s.add_argument("--ann", action="store_true", help="train the ANN twin instead of the spiking model")
    s.add_argument("--teacher", metavar="FILE", help="distil from this ANN twin checkpoint (.pt): its logits and "
                   "hidden states join the loss (spikelm-enc, spikelm-dec; spikegpt: logits only)")
    s.add_argument("--learnable-alpha", action="store_true", help="train the spike amplitudes α instead of "
                   "freezing them at their first-batch value (spikelm-enc, spikelm-dec)")
    # bounds: MAX_LEVELS and MAX_WIDTH of models/checkpoint.py (not imported: the parser stays torch-free)
    s.add_argument("--levels", type=integer(1, 1024), metavar="K", help="spike levels: spikes in -K..K "
                   "(spikelm-dec; default 1, SpikeLM's ternary spike)")
    s.add_argument("--width", type=integer(1, 65_536), metavar="C", help="channels per layer, n_embd (spikegpt; "
                   "default 64)")
    s.add_argument("-o", "--output", required=True, help="checkpoint file to write (.pt)")

    s = _add(sub, "import", "published checkpoint (SpikeGPT .pth, Hugging Face LLaMA folder, …) → our checkpoint "
             "(.pt)", force="replace an existing checkpoint file (never the input)")
    s.add_argument("source", help="published weights: .pth/.bin/.safetensors file or a Hugging Face model folder")
    s.add_argument("-o", "--output", required=True, help="checkpoint file to write (.pt)")
    _family_option(s)
    s.add_argument("--tokenizer", metavar="FILE", help="tokenizer.json, vocab.json (characters) or vocab.txt "
                   "(default: the one found beside the source)")
    s.add_argument("--text", metavar="FILE", help="UTF-8 text that SpikeLLM's salient channels are calibrated on "
                   "(default: the shipped corpus)")

    s = _add(sub, "export", "checkpoint → NIR file", force="replace an existing output file (never the input)")
    s.add_argument("checkpoint", help="a checkpoint (.pt) of any family, or a published one (.pth, .bin, "
                   ".safetensors, Hugging Face folder)")
    s.add_argument("-o", "--output", required=True, help="NIR file to write (.nir)")
    _family_option(s)

    s = _add(sub, "compile", "checkpoint or NIR file → artifact directory")
    s.add_argument("source", help="checkpoint (.pt, or published: .pth, .bin, .safetensors, Hugging Face folder) "
                   "or NIR file (.nir)")
    s.add_argument("--target", default="loihi2", help="target name (spikestack targets) or path to a .toml")
    s.add_argument("-o", "--output", required=True, help="artifact folder to write")
    _family_option(s)
    s.add_argument("--dump-ir", metavar="DIR", help="write the IR after every pass into DIR as NNN_pass.json")
    s.add_argument("--dump-after", choices=sorted(set(PASS_NAMES) | set(HYBRID_PASSES)),
                   help="write the IR after this pass next to the artifact (chain passes: "
                        f"{', '.join(PASS_NAMES)}; language-model passes: {', '.join(HYBRID_PASSES)})")
    s.add_argument("--dt", type=seconds, help="Euler step in seconds for foreign LIF graphs, overriding every "
                   "node's own (default: node metadata dt, else graph metadata spikestack.dt, else 1e-4; at most "
                   f"{DT_MAX_S:g})")
    s.add_argument("--steps", type=integer(1, COMPILE_STEPS_MAX),
                   help="steps per input sample for foreign LIF graphs (default 100)")
    s.add_argument("--calibrate", type=integer(0, CALIBRATE_MAX), default=256, metavar="N",
                   help="measure per-layer quantisation error on N validation windows (0: skip); language "
                   "models with over 10^9 weights x positions use fewer, and the report says how many")
    s.add_argument("--dataflow", action="store_true",
                   help="SpikeGPT: fold Linears of the normed residual stream onto the cores (event-driven "
                        "projections; compiler/hybrid/fold.py)")
    s.add_argument("--encoding", choices=("graded", "unary", "bitserial"),
                   help="force one spike encoding on every bi-spike edge (default: the cost model picks)")
    _text_option(s, "to calibrate on (language models) and for --calibrate")

    s = _add(sub, "run", "run an artifact on the validation text", force="replace an existing trace file")
    s.add_argument("artifact", help="artifact folder")
    s.add_argument("--backend", choices=("reference", "lava", "torch", "float"), default="reference",
                   help="the numpy reference executor, the torch model or Lava's CPU simulator; float: the NIR "
                        "graph's own float equations (foreign LIF artifacts, needs --nir)")
    s.add_argument("--tokens", type=integer(1), default=256, help="validation tokens (at most what the text holds)")
    s.add_argument("--streams", type=integer(1), default=1, help="token-streaming programs (SpikeGPT): read the "
                   "--tokens as this many independent streams, batched in each call (faster on large models, and "
                   "what --workers shards); each stream starts from the initial state")
    s.add_argument("--trace", help="save the event trace: .npz (spikestack) or .nir (NIR ValuedEventData)")
    s.add_argument("--input", metavar="FILE", help="the inputs (.npy/.npz): [samples, steps, inputs] 0/1 spike "
                   "rasters for foreign LIF artifacts, integer token ids otherwise (instead of --tokens)")
    s.add_argument("--nir", metavar="FILE", help="the NIR file the artifact was compiled from (--backend float)")
    _text_option(s, "to evaluate on (bits per byte, perplexity; bits per character for character models)")
    _dask_options(s)

    s = _add(sub, "simulate", "SOPs, energy and latency of an artifact under a hardware profile",
             force="replace existing plot and report files")
    s.add_argument("artifact", help="artifact folder")
    s.add_argument("--profile", help="profile name (spikestack profiles) or .toml (default: the target's)")
    s.add_argument("--tokens", type=integer(1), default=1024, help="validation tokens run before counting")
    s.add_argument("--streams", type=integer(1), default=1, help="token-streaming programs (SpikeGPT): read the "
                   "--tokens as this many independent streams, batched in each call (faster on large models, and "
                   "what --workers shards); each stream starts from the initial state")
    s.add_argument("--input", metavar="FILE", help="the inputs (.npy/.npz): [samples, steps, inputs] 0/1 spike "
                   "rasters for foreign LIF artifacts, integer token ids otherwise (instead of --tokens)")
    s.add_argument("--json", action="store_true", help="print the whole report as JSON")
    _text_option(s, "run before counting")
    s.add_argument("--plots", help="write firing-rate, core-load, energy and ANN-comparison PNGs into this folder")
    s.add_argument("--report", help="write a report (.md or .html) with conventions side by side and sources")
    s.add_argument("--trace", help="price this saved trace (.npz from `run --trace`) instead of running the program")
    _dask_options(s)

    s = _add(sub, "sweep", "targets x profiles table for one NIR file or checkpoint (compiled per target)",
             force="replace an existing table file")
    s.add_argument("source", help="checkpoint (.pt, or published: .pth, .bin, .safetensors, Hugging Face folder) "
                   "or NIR file (.nir)")
    _family_option(s)
    s.add_argument("--targets", default="loihi2", help="comma-separated target names or .toml paths")
    s.add_argument("--profiles", default="loihi2_assumed", help="comma-separated profile names or .toml paths")
    s.add_argument("--tokens", type=integer(1), default=256, help="validation tokens per compiled program")
    s.add_argument("--encodings", default="auto", help="comma-separated: auto (cost model), graded, unary, bitserial")
    _text_option(s, "to calibrate and evaluate each compiled language model on")
    _dask_options(s, workers=False).add_argument("--workers", type=integer(1, MAX_WORKERS), default=2,
                                                 help=f"parallel local processes (1..{MAX_WORKERS})")
    s.add_argument("-o", "--output", help="write the table as .csv or .json")

    s = _add(sub, "verify", "torch fake-quant vs reference vs Lava, spike for spike")
    s.add_argument("artifact", help="artifact folder")
    s.add_argument("--backends", default=DEFAULT_VERIFY_BACKENDS, help="comma-separated, two or more")
    s.set_defaults(default_backends=DEFAULT_VERIFY_BACKENDS)
    s.add_argument("--tokens", "--inputs", dest="tokens", type=integer(1), default=32,
                   help="number of input tokens (positions) run through every backend")
    s.add_argument("--input", metavar="FILE", help="the inputs (.npy/.npz): [samples, steps, inputs] 0/1 spike "
                   "rasters for foreign LIF artifacts, integer token ids otherwise (instead of --tokens)")
    s.add_argument("--nir", metavar="FILE", help="the NIR file the artifact was compiled from: also report the "
                   "agreement with its float equations (foreign LIF artifacts)")
    _text_option(s, "whose ids every backend runs")

    s = _add(sub, "evaluate", "sentence-classification accuracy of a SpikeLM encoder checkpoint on a labelled "
             "file, float and (with --compiled) compiled")
    s.add_argument("checkpoint", help="spikelm-enc checkpoint (.pt, or a published SpikeLM BERT folder/file)")
    s.add_argument("--labels", metavar="FILE", required=True,
                   help="UTF-8 file, one example per line: LABEL<TAB>TEXT; LABEL is a class index 0..classes-1 or "
                        "a class name the checkpoint stores; TEXT is encoded by the checkpoint's tokenizer (BERT: "
                        "[CLS] TEXT [SEP]); blank lines are skipped; a text longer than the model's context is "
                        "refused, never truncated")
    s.add_argument("--compiled", action="store_true", help="also compile the class head for --target and report "
                   "its accuracy (numpy reference executor) and its agreement with the float model")
    s.add_argument("--target", default="loihi2", help="target name (spikestack targets) or path to a .toml")
    s.add_argument("--encoding", choices=("graded", "unary", "bitserial"),
                   help="force one spike encoding on every bi-spike edge (default: the cost model picks)")
    _family_option(s)

    s = _add(sub, "generate", "greedy text from a float checkpoint or a compiled artifact directory")
    s.add_argument("checkpoint", help="checkpoint (.pt or published, float model) or artifact directory (compiled)")
    _family_option(s)
    s.add_argument("--backend", choices=("reference", "lava", "torch"), default="reference",
                   help="backend for an artifact")
    s.add_argument("--prompt", type=prompt, default="The ", help="text to continue")
    s.add_argument("--tokens", type=integer(0, GENERATE_TOKENS_MAX), default=80, help="tokens to generate")

    s = _add(sub, "inspect", "an artifact directory (cores, encodings, host ops) or a NIR file (nodes)")
    s.add_argument("path", help="artifact folder or NIR file")

    _add(sub, "targets", "list hardware targets")
    _add(sub, "profiles", "list energy profiles with their sources")

    s = _add(sub, "demo", "the whole chain on the shipped checkpoint, with a short report")
    s.add_argument("--out", default="build/demo", help="folder for the demo's files")
    s.add_argument("--tokens", type=integer(1), default=4096, help="validation tokens (at most what the text holds)")
    s.add_argument("--verify-tokens", type=integer(1), help="tokens checked on every backend (at most --tokens; "
                   "default 32 or --tokens if fewer)")
    return p
