"""The LLM proposer: any OpenAI-compatible endpoint proposes schedule steps for the search.

- ``client``   — ``LLMClient``: endpoint / model / key from arguments or the environment,
  retries with backoff, caps, token and latency counting, clear ``LLMError``s, no key leaks.
- ``prompt``   — the chat messages: target, program, trace, ancestors, vocabulary, answer format.
- ``parse``    — JSON out of free text (repaired, never evaluated), steps validated on the schedule.
- ``proposer`` — ``LLMProposer`` (the ``Proposer`` protocol) with heuristic fallback and ``LLMStats``.
- ``record``   — record a tune's calls and measurements; replay them offline, identically.
"""
from .client import (LLMAuthError, LLMCapReached, LLMClient, LLMError, LLMRateLimited, LLMResponseError,
                     LLMServerError, LLMTimeout, LLMUnreachable)
from .proposer import LLMConfig, LLMProposer, LLMStats, make_proposer

__all__ = ["LLMClient", "LLMConfig", "LLMProposer", "LLMStats", "make_proposer", "LLMError", "LLMAuthError",
           "LLMUnreachable", "LLMTimeout", "LLMRateLimited", "LLMServerError", "LLMResponseError",
           "LLMCapReached"]
