"""Evolutionary search in the manner of TVM MetaSchedule: a population of traces, mutated and selected.

Initial population: sketches — at each phase one of the heuristic proposer's options picked
uniformly at random (MetaSchedule's sketch rules with random decisions) — plus random walks.
Each generation keeps the fastest ``elite`` traces and fills the population with mutants:
a tiling or split factor redrawn, a step dropped, or a random legal step appended.
Mutants are replayed first; an illegal one is discarded without spending a sample.
"""
from __future__ import annotations

import random
from typing import Optional

from minicompiler.schedule import Schedule, Step
from minicompiler.schedule.params import count_params

from .legality import try_steps
from .heuristic import HeuristicProposer
from .proposer import Context
from .session import BudgetExhausted, Session
from .space import Space, factor_candidates

_FACTOR_ARGS = count_params()   # the numeric decisions a mutation may change, from the declarations


class Evolutionary:
    name = "evolutionary"

    def __init__(self, population: int = 8, elite: int = 3, sketch_fraction: float = 0.75) -> None:
        self.population, self.elite, self.sketch_fraction = population, elite, sketch_fraction

    def run(self, session: Session, rng: random.Random) -> None:
        space = Space(session.target)
        root = session.workload.schedule()
        scored: list[tuple[float, Schedule]] = []
        try:
            session.measure(root)
            generation = [self._sketch(root, session, rng) if rng.random() < self.sketch_fraction
                          else self._walk(root, space, rng) for _ in range(self.population)]
            stale = 0
            while session.remaining > 0 and stale < 20:
                before = session.samples
                for schedule in generation:
                    t = session.measure(schedule)
                    if t is not None:
                        scored.append((t, schedule))
                stale = stale + 1 if session.samples == before else 0
                scored.sort(key=lambda x: x[0])
                parents = [s for _, s in scored[: self.elite]] or [root]
                generation = [m for m in (self._mutate(rng.choice(parents), root, space, rng)
                                          for _ in range(self.population)) if m is not None]
        except BudgetExhausted:
            pass

    @staticmethod
    def _sketch(root: Schedule, session: Session, rng: random.Random) -> Schedule:
        proposer, schedule = HeuristicProposer(max_variants=8), root
        for _ in range(8):
            options = proposer.propose(Context(schedule, session.target), n=8)
            if not options:
                break
            schedule = schedule.replay(rng.choice(options).steps)
        return schedule

    @staticmethod
    def _walk(root: Schedule, space: Space, rng: random.Random) -> Schedule:
        schedule = root
        for _ in range(rng.randint(1, 8)):
            picked = space.sample(schedule, rng)
            if picked is None:
                break
            schedule = picked[1]
        return schedule

    @staticmethod
    def _mutate(parent: Schedule, root: Schedule, space: Space, rng: random.Random) -> Optional[Schedule]:
        steps = list(parent.steps)
        for _ in range(10):
            trial = list(steps)
            choice = rng.random()
            numeric = [i for i, s in enumerate(trial) if any(k in s.kwargs for k in _FACTOR_ARGS)]
            if choice < 0.6 and numeric:
                i = rng.choice(numeric)
                args = dict(trial[i].kwargs)
                key = rng.choice([k for k in _FACTOR_ARGS if k in args])
                args[key] = rng.choice(factor_candidates(max(2, args[key] * 8), space.target.vector_lanes("float32"), 12))
                trial[i] = Step.make(trial[i].op, **args)
            elif choice < 0.75 and trial:
                del trial[rng.randrange(len(trial))]
            else:
                base = try_steps(root, trial)
                if base is None:
                    continue
                picked = space.sample(base, rng)
                if picked is None:
                    continue
                trial.append(picked[0])
            result = try_steps(root, trial)
            if result is not None:
                return result
        return None
