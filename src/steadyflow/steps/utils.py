"""Which steps run: simpleflow's rules for forced and skipped step names.

Names are hierarchical: forcing (or skipping) `a` also forces `a.b` and `a.b.c`, and `*` stands
for every step. Forcing wins over skipping; otherwise a step runs when it is not done yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def _covers(pattern: str, step_name: str) -> bool:
    return pattern == "*" or pattern == step_name or step_name.startswith(pattern + ".")


def should_force_step(step_name: str, force_steps: Iterable[str]) -> bool:
    """True when one of `force_steps` names this step, one of its parents, or is `*`."""
    return any(_covers(p, step_name) for p in force_steps)


def should_skip_step(step_name: str, skipped_steps: Iterable[str]) -> bool:
    return should_force_step(step_name, skipped_steps)


def step_will_run(
    step_name: str,
    force_steps: Iterable[str],
    skipped_steps: Iterable[str],
    steps_done: Iterable[str],
    force: bool = False,
) -> bool:
    """Forced (by `force` or by name) runs; skipped by name does not; else it runs unless done."""
    if force or should_force_step(step_name, force_steps):
        return True
    if should_skip_step(step_name, skipped_steps):
        return False
    return step_name not in set(steps_done)


def step_is_forced(step_name: str, force_steps: Iterable[str], force: bool) -> bool:
    return force or should_force_step(step_name, force_steps)


def step_is_skipped_by_force(step_name: str, skipped_steps: Iterable[str]) -> bool:
    return should_skip_step(step_name, skipped_steps)


def step_reasons(step_name: str, reasons: Mapping[str, Iterable[str]]) -> list[str]:
    """The reasons given for every pattern that covers this step, sorted (they come from sets)."""
    found: list[str] = []
    for pattern, given in reasons.items():
        if _covers(pattern, step_name):
            found += sorted(given)
    return found


get_step_force_reasons = step_reasons
get_step_skip_reasons = step_reasons

__all__ = [
    "get_step_force_reasons",
    "get_step_skip_reasons",
    "should_force_step",
    "should_skip_step",
    "step_is_forced",
    "step_is_skipped_by_force",
    "step_reasons",
    "step_will_run",
]
