"""Random search: each sample is a random walk of legal steps from the unscheduled program."""
from __future__ import annotations

import random

from .session import BudgetExhausted, Session
from .space import Space


class RandomSearch:
    name = "random"

    def __init__(self, max_depth: int = 10) -> None:
        self.max_depth = max_depth

    def run(self, session: Session, rng: random.Random) -> None:
        space = Space(session.target)
        root = session.workload.schedule()
        try:
            session.measure(root)
            stale = 0
            while session.remaining > 0 and stale < 50:
                schedule = root
                for _ in range(rng.randint(1, self.max_depth)):
                    picked = space.sample(schedule, rng)
                    if picked is None:
                        break
                    schedule = picked[1]
                before = session.samples
                session.measure(schedule)
                stale = stale + 1 if session.samples == before else 0  # a repeat costs nothing; stop if stuck
        except BudgetExhausted:
            pass
