"""The auto-scheduler: decision space, proposers, MCTS and baselines, measurement, tuning database."""
from .tune import STRATEGIES, TuneResult, best_schedule, tune

__all__ = ["tune", "TuneResult", "best_schedule", "STRATEGIES"]
