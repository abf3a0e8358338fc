"""The pass manager both compilers share: an ordered tuple of `Pass`es run over one IR, each checked by its verifier.

Why one manager: the chain compiler (`compiler/pipeline.py`) and the language-model compiler
(`compiler/hybrid/compile.py`) are the same shape — named pure passes, a verifier after each, a failure that names
the passes run so far, and an `on_pass` hook (`compile --dump-ir`) that sees the IR after every pass. Keeping that
loop in one place is what makes the two pipelines read alike and lets tests check the contract once (the torch.fx
`PassManager` and TVM `PassContext` instruments habit).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from spikestack.errors import CompileError

Context = TypeVar("Context")


def _no_check(_ir: Any) -> None:
    """The default verifier: a pass whose output has no invariant beyond its type."""


def _itself(ir: Any) -> Any:
    return ir


@dataclass(frozen=True, slots=True)
class Pass(Generic[Context]):
    """One named step of a pipeline: `run(ir, context) -> ir` must not mutate its input (it returns a new IR, or
    the same one when nothing changes); `verify(ir)` raises CompileError when the output breaks an invariant;
    `view(ir)` is what `on_pass` sees (a stage may carry more than its dump shows)."""

    name: str
    why: str  # one line: why the pass exists (docs/architecture.md's tables are built from these)
    run: Callable[[Any, Context], Any]
    verify: Callable[[Any], None] = _no_check
    view: Callable[[Any], Any] = _itself


def run_passes(passes: Iterable[Pass[Context]], ir: Any, context: Context,
               on_pass: Callable[[str, Any], None] | None = None, *, already_run: tuple[str, ...] = ()) -> Any:
    """Run `passes` in order over `ir`; after each, its verifier and then `on_pass(name, view(ir))`.

    A plain CompileError from a pass or its verifier is re-raised with the passes run so far (`already_run`, e.g.
    the chain's `from_nir`, then every pass up to the failing one), so a user sees where the compile stopped; its
    subclasses (TargetLimitError …) and messages that already name the passes pass through unchanged."""
    done = list(already_run)
    for p in passes:
        try:
            ir = p.run(ir, context)
            p.verify(ir)
        except CompileError as exc:
            if "passes run:" in str(exc) or type(exc) is not CompileError:
                raise
            raise CompileError(f"{exc} (passes run: {', '.join(done + [p.name])})") from None
        done.append(p.name)
        if on_pass is not None:
            on_pass(p.name, p.view(ir))
    return ir
