"""Checkpoint cases: malicious pickles (must never run: their marker file must never appear), plain pickle files,
mutated configs, state dicts and top-level fields of the shipped bispike-mlp checkpoint, and byte-level damage."""

from __future__ import annotations

import copy
import pathlib
import pickle
import random
from functools import cache
from pathlib import Path
from typing import Any

import torch

from .cases import case_dirs
from .harness import Case
from .mutators import mutate_bytes
from .seeds import Seeds


class Touch:
    """Unpickling this calls `Path.touch(marker)`: the proof that a loader executed pickled code.

    The class itself is not needed to unpickle (only pathlib is), so a loader in another process would run it too.
    """

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@cache
def _base(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


BAD_VALUES: list[Any] = [None, "x", [], {}, 1.5, True, 0, -1, 2**31, 10**12, 2**63, float("nan")]


def _edit(rng: random.Random, ckpt: dict, marker: Path) -> tuple[Any, str]:
    """One edit of a loaded checkpoint dict; returns (object to save, note)."""
    sd, cfg = ckpt["state_dict"], ckpt["config"]
    op = rng.choice(["evil_field", "evil_state", "cfg_del", "cfg_bad", "cfg_bad", "cfg_int", "family", "top_del",
                     "top_type", "sd_missing", "sd_extra", "sd_shape", "sd_shape", "sd_nonfinite", "sd_dtype",
                     "sd_type", "vocab"])
    tensors = sorted(k for k, v in sd.items() if isinstance(v, torch.Tensor))  # an earlier edit may have replaced one
    key = rng.choice(tensors) if tensors else "none"
    if not tensors and op.startswith("sd_"):
        op = "vocab"
    if op == "evil_field":
        field = rng.choice(["config", "metrics", "family", "vocab", "extra"])
        ckpt[field] = Touch(marker)
        return ckpt, f"checkpoint[{field!r}] = pickled Path.touch"
    if op == "evil_state":
        sd[key] = Touch(marker)
        return ckpt, f"state_dict[{key!r}] = pickled Path.touch"
    if op == "cfg_del":
        name = rng.choice(sorted(cfg))
        del cfg[name]
        return ckpt, f"config: delete {name!r}"
    if op in ("cfg_bad", "cfg_int"):
        name = rng.choice(sorted(cfg))
        cfg[name] = rng.choice(BAD_VALUES if op == "cfg_bad" else [0, -1, -(2**40), 2**20, 10**9, 2**63 - 1])
        return ckpt, f"config[{name!r}] = {cfg[name]!r}"
    if op == "family":
        ckpt["family"] = rng.choice([None, 1, "spikellm", "spikegpt", "spikelm-enc", "nope", "../x", "bispike-mlp "])
        return ckpt, f"family = {ckpt['family']!r}"
    if op == "top_del":
        name = rng.choice(sorted(ckpt))
        del ckpt[name]
        return ckpt, f"delete {name!r}"
    if op == "top_type":
        obj = rng.choice([[], "bispike-mlp", None, 1, torch.zeros(3), {"family": "bispike-mlp"}])
        return obj, f"checkpoint is {obj!r}"[:80]
    if op == "sd_missing":
        del sd[key]
        return ckpt, f"state_dict: delete {key!r}"
    if op == "sd_extra":
        sd[rng.choice(["junk.weight", f"{key}.extra", "fc9.bias"])] = torch.ones(3)
        return ckpt, "state_dict: unexpected key"
    t = sd[key]
    if op == "sd_shape":
        new = rng.choice([t.T if t.dim() == 2 else t.reshape(1, -1), t.reshape(-1)[:0], t.reshape(-1)[:1].squeeze(),
                          torch.cat([t, t]), torch.zeros(512, 512), t[..., :1]])
        sd[key] = new.contiguous()
        return ckpt, f"state_dict[{key!r}] shape {tuple(t.shape)} → {tuple(new.shape)}"
    if op == "sd_nonfinite":
        sd[key] = torch.full_like(t, rng.choice([float("nan"), float("inf"), -float("inf"), 1e38]))
        return ckpt, f"state_dict[{key!r}] = {sd[key].reshape(-1)[0].item()}"
    if op == "sd_dtype":
        sd[key] = t.to(rng.choice([torch.int64, torch.float16, torch.bool, torch.complex64, torch.uint8]))
        return ckpt, f"state_dict[{key!r}] dtype {sd[key].dtype}"
    if op == "sd_type":
        sd[key] = rng.choice([[1.0, 2.0], "w", 3, None, {"a": 1}])
        return ckpt, f"state_dict[{key!r}] = {sd[key]!r}"
    ckpt["vocab"] = rng.choice(["", "ab", "x" * 300, 5, ["a"], None])
    return ckpt, f"vocab = {ckpt['vocab']!r}"[:80]


def write_checkpoint(rng: random.Random, seeds: Seeds, path: Path, marker: Path) -> tuple[str, bool]:
    """A mutated checkpoint at `path`; returns (note, must fail)."""
    ckpt = copy.deepcopy(_base(seeds.checkpoint))
    area = rng.choice(["edit"] * 6 + ["evil_top", "plain_pickle", "plain_evil", "bytes", "bytes"])
    if area == "evil_top":
        torch.save({"family": "bispike-mlp", "payload": Touch(marker)} if rng.random() < 0.5 else Touch(marker),
                   path)
        return "torch.save of a pickled Path.touch", True
    if area in ("plain_pickle", "plain_evil"):
        obj = Touch(marker) if area == "plain_evil" else ckpt
        path.write_bytes(pickle.dumps(obj, protocol=rng.choice([2, 4])))
        return f"plain pickle file ({'Path.touch' if area == 'plain_evil' else 'the checkpoint dict'})", \
            area == "plain_evil"
    if area == "bytes":
        torch.save(ckpt, path)
        return mutate_bytes(rng, path), False
    notes, obj = [], ckpt
    for _ in range(rng.choice([1, 1, 2])):
        if not isinstance(obj, dict) or "state_dict" not in obj or not isinstance(obj.get("config"), dict) \
                or not isinstance(obj["state_dict"], dict) or not obj["state_dict"]:
            break
        obj, note = _edit(rng, obj, marker)
        notes.append(note)
    torch.save(obj, path)
    return "; ".join(notes), _holds_payload(obj)  # a second edit may have deleted the first one's payload


def _holds_payload(obj: Any) -> bool:
    if isinstance(obj, Touch):
        return True
    if isinstance(obj, dict):
        return any(_holds_payload(v) for v in obj.values())
    return isinstance(obj, list | tuple) and any(_holds_payload(v) for v in obj)


def checkpoint_case(seed: int, seeds: Seeds, root: Path) -> Case:
    rng = random.Random(f"checkpoint:{seed}")
    scratch, outside = case_dirs(root, "checkpoint", seed)
    marker = outside / "payload-ran"
    ckpt = scratch / "model.pt"
    note, must_fail = write_checkpoint(rng, seeds, ckpt, marker)
    command = rng.choice(["compile", "export", "generate"])
    if command == "compile":
        out = scratch / "out"
        argv = ["compile", str(ckpt), "-o", str(out), "--calibrate", "0"]
    elif command == "export":
        out = scratch / "out.nir"
        argv = ["export", str(ckpt), "-o", str(out)]
    else:
        out, argv = None, ["generate", str(ckpt), "--tokens", "2"]
    return Case("checkpoint", seed, argv, scratch, outside, output=out, note=note, expect_error=must_fail,
                forbidden=(marker,))
