"""The auto-scheduler: decision space, proposers, MCTS and baselines, measurement, tuning database.

Importing it registers ``default_schedule`` as a schedule source of the compiler core, which is
how ``mc.einsum`` finds tuned schedules without the core importing the auto-scheduler.
"""
from minicompiler.schedule.sources import register_schedule_source

from .tune import STRATEGIES, TuneError, TuneResult, best_schedule, default_schedule, tune

register_schedule_source(default_schedule)

__all__ = ["tune", "TuneResult", "TuneError", "best_schedule", "default_schedule", "STRATEGIES"]
