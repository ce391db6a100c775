"""``LLMProposer``: the search's proposer, answered by a language model.

    proposer = LLMProposer(LLMClient(base_url="http://localhost:8000/v1", model="Qwen/Qwen2.5-Coder-7B"))
    result = minicompiler.tune(C, budget=32, proposer=proposer)      # or proposer="llm", llm_... options
    result.llm_stats.summary()

One ``propose(context, n)``: build the prompt (``prompt.messages``), ask the model once
(``client.complete``), read and validate its answer (``parse.parse_response``) and return the
proposals that survived, each with the model's reasoning. The model's text never runs: it
only becomes ``Step`` data after validation, and the transforms check every step again.

The model works *with* the heuristic, not instead of it. At every expansion the heuristic's
ranked variants for the node are shown to the model as numbered candidates; the answer ranks
the ones worth measuring (``choice``) and may add sequences of its own. The proposals returned
start with the heuristic's first variant, then alternate the model's own proposals with the
other candidates, in the model's order (``merge``): a weak or wrong model costs samples at
most, since every node's first child is the one the heuristic alone would have measured.

The answer is constrained where the server can (``client.complete(..., schema)``: the schema
has this program's loop, tensor and op names as enums); the prompt is as detailed as the
model's context window allows (``prompt.fitting``; a context overflow makes the next prompt
more compact, and a window too small for the most compact one turns the LLM off).

A misbehaving model cannot break a tune: an answer with no valid, new proposal and no valid
choice, or a failed call (timeout, 429/5xx after retries, refused key, unreachable server, cap
reached), is answered by the heuristic proposer instead and counted as a *fallback*. An error
that asking again will not fix (``LLMError.fatal``: refused key, unknown model, a context window
too small for any prompt) turns the LLM off for the rest of the tune, with one warning. With
``fallback_on_error=False`` the error is raised instead (except a reached cap: that is the
tune's budget for the LLM, and the tune goes on with the heuristic).
"""
from __future__ import annotations

import dataclasses
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any, Optional, Sequence

from minicompiler.search.heuristic import HeuristicProposer
from minicompiler.search.proposer import Context, Proposal, Proposer, TuneHooks

from . import prompt
from .client import LLMCapReached, LLMClient, LLMContextError, LLMError, Usage
from .parse import Parsed, parse_response
from .record import Recorder, Recording, RecordingClient, RecordingMeasurer, ReplayClient, ReplayMeasurer

log = logging.getLogger("minicompiler.llm")


@dataclass
class LLMStats:
    """What the LLM did in one tune: calls, tokens, latency, fallbacks, dropped steps, cost."""

    model: str
    base_url: str
    mode: str                                   # "live", "record" or "replay"
    usage: Usage
    price: Optional[tuple[float, float]] = None  # $ per 1M prompt / completion tokens, if known
    requests: int = 0                           # propose() calls: each asks for n proposals
    fallbacks: int = 0                          # ... answered by the heuristic instead
    fallback_reasons: Counter = field(default_factory=Counter)
    proposals: int = 0                          # valid proposals the model gave
    steps_proposed: int = 0
    steps_kept: int = 0
    dropped: list[tuple[str, str]] = field(default_factory=list)   # (step as written, why)
    repaired_answers: int = 0                   # answers whose JSON needed repair
    choices: int = 0                            # candidates the model ranked (valid numbers)
    answers_usable: int = 0                     # answers with a valid choice or a valid proposal
    answers_reused: int = 0                     # requests served by a node's earlier answer (no call)
    prompt_levels: Counter = field(default_factory=Counter)   # how often each prompt size was sent
    dialects: Counter = field(default_factory=Counter)        # response formats of the answered calls
    disabled: str = ""                          # why the LLM was turned off mid-tune, if it was
    replay_mismatches: int = 0                  # replay: prompts that differ from the recording
    replay_samples: int = 0                     # replay: candidates answered from the recording
    replay_measured: int = 0                    # replay: candidates the recording lacked (measured)

    @property
    def calls(self) -> int:
        return self.usage.calls

    @property
    def prompt_tokens(self) -> int:
        return self.usage.prompt_tokens

    @property
    def completion_tokens(self) -> int:
        return self.usage.completion_tokens

    @property
    def tokens(self) -> int:
        return self.usage.tokens

    @property
    def latency_s(self) -> float:
        return self.usage.latency_s

    @property
    def mean_latency_s(self) -> float:
        attempts = self.usage.calls + self.usage.failed_calls
        return self.usage.latency_s / attempts if attempts else 0.0

    @property
    def fallback_rate(self) -> float:
        return self.fallbacks / self.requests if self.requests else 0.0

    @property
    def legal_step_rate(self) -> float:
        return self.steps_kept / self.steps_proposed if self.steps_proposed else 0.0

    @property
    def cost_usd(self) -> Optional[float]:
        """Estimated spend, None when the price is unknown (local servers, unlisted models)."""
        if self.price is None:
            return None
        return (self.usage.prompt_tokens * self.price[0] + self.usage.completion_tokens * self.price[1]) / 1e6

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "base_url": self.base_url, "mode": self.mode, "calls": self.calls,
                "failed_calls": self.usage.failed_calls, "http_requests": self.usage.requests,
                "retries": self.usage.retries, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "tokens_estimated": self.usage.usage_estimated,
                "latency_s": self.latency_s, "mean_latency_s": self.mean_latency_s, "requests": self.requests,
                "fallbacks": self.fallbacks, "fallback_rate": self.fallback_rate,
                "fallback_reasons": dict(self.fallback_reasons), "proposals": self.proposals,
                "steps_proposed": self.steps_proposed, "steps_kept": self.steps_kept,
                "dropped": [list(d) for d in self.dropped], "cost_usd": self.cost_usd,
                "choices": self.choices, "answers_usable": self.answers_usable,
                "answers_reused": self.answers_reused,
                "legal_step_rate": self.legal_step_rate, "prompt_levels": dict(self.prompt_levels),
                "dialects": dict(self.dialects),
                "disabled": self.disabled, "replay_mismatches": self.replay_mismatches,
                "replay_samples": self.replay_samples, "replay_measured": self.replay_measured}

    def summary(self) -> str:
        """A few lines for the end of a tune."""
        cost = "unknown (no price for this model / endpoint)" if self.cost_usd is None else f"${self.cost_usd:.4f}"
        if self.mode == "replay":
            cost = f"nothing (replayed; the recorded run cost {cost})"
        tokens = f"{self.prompt_tokens} prompt + {self.completion_tokens} completion tokens" + \
            (" (estimated: the server sent no usage)" if self.usage.usage_estimated else "")
        lines = [
            f"LLM ({self.mode}): {self.model} at {self.base_url}",
            f"  calls: {self.calls} answered, {self.usage.failed_calls} failed, {self.usage.retries} retries; "
            f"{tokens}",
            f"  latency{' (as recorded)' if self.mode == 'replay' else ''}: {self.latency_s:.2f} s total, "
            f"{self.mean_latency_s:.2f} s per call",
            f"  fallback rate: {self.fallback_rate:.0%} ({self.fallbacks} of {self.requests} proposal requests "
            f"answered by the heuristic" + (f": {dict(self.fallback_reasons)}" if self.fallbacks else "") + ")",
            f"  steps: {self.steps_kept} of {self.steps_proposed} proposed steps were legal; "
            f"{len(self.dropped)} dropped; {self.choices} choices among the heuristic's candidates",
            f"  prompts: {dict(self.prompt_levels)}; response formats: {dict(self.dialects)}",
            f"  estimated cost: {cost}",
        ]
        if self.disabled:
            lines.append(f"  LLM turned off mid-tune: {self.disabled}")
        if self.mode == "replay":
            lines.append(f"  replay: {self.replay_samples} samples from the recording, {self.replay_measured} "
                         f"measured anew, {self.replay_mismatches} prompts differing from the recording")
        for step, why in self.dropped[:5]:
            lines.append(f"  dropped {step}: {why}")
        if len(self.dropped) > 5:
            lines.append(f"  ... and {len(self.dropped) - 5} more dropped steps (result.llm_stats.dropped)")
        return "\n".join(lines)


class LLMProposer(TuneHooks):
    """Proposals from a language model, validated; the heuristic answers when the model cannot."""

    name = "llm"

    def __init__(self, client: Any = None, fallback: Optional[Proposer] = None,
                 record: str | Path | None = None, replay: str | Path | None = None, ancestor_depth: int = 2,
                 fallback_on_error: bool = True, peak_gflops: Optional[float] = None, candidates: int = 4,
                 system_role: Optional[bool] = None, prompt_level: Optional[str] = None) -> None:
        if record is not None and replay is not None:
            raise ValueError("record and replay are exclusive: replaying a recording never calls the LLM")
        self.recording = Recording(replay) if replay is not None else None
        self.recorder: Optional[Recorder] = None
        if self.recording is not None:
            client, mode = ReplayClient(self.recording), "replay"
        else:
            client = client if client is not None else LLMClient()
            mode = "live"
            if record is not None:
                self.recorder = Recorder(record, secrets=getattr(client, "secrets", ()))
                client, mode = RecordingClient(client, self.recorder), "record"
        self.client = client
        self.fallback = fallback if fallback is not None else HeuristicProposer()
        self.ancestor_depth = ancestor_depth
        self.fallback_on_error = fallback_on_error
        self.peak_gflops = peak_gflops
        self.flops: Optional[int] = None
        price = client.price if self.recording is None else _price(self.recording.header.get("price"))
        self.stats = LLMStats(str(client.model), str(client.base_url), mode, client.usage, price)
        self.history: list[dict[str, Any]] = []   # per call: the reasoning beside every proposed step
        self._replay_measurer: Optional[ReplayMeasurer] = None
        self.candidates = candidates              # heuristic variants shown to the model per call
        # Chat templates without a system role (Gemma's) drop the system message silently.
        self.system_role = ("gemma" not in self.stats.model.lower()) if system_role is None else system_role
        if prompt_level is not None and prompt_level not in prompt.LEVELS:
            raise ValueError(f"the prompt level is one of {', '.join(prompt.LEVELS)}, got {prompt_level!r}")
        self._level = prompt.LEVELS.index(prompt_level) if prompt_level else 0   # the most detailed allowed
        self._unused: dict[tuple, list[Proposal]] = {}   # per node: the model's proposals not yet returned

    # -- hooks tune() calls ------------------------------------------------------------------------
    @property
    def replay_seed(self) -> Optional[int]:
        """The recorded run's seed (a replay reuses it unless told otherwise)."""
        seed = self.recording.header.get("seed") if self.recording is not None else None
        return int(seed) if isinstance(seed, int) else None

    @property
    def replay_target(self) -> Optional[dict[str, Any]]:
        """The recorded run's target description: a replay plans for the machine it was recorded on,
        so the heuristic's candidates (in the prompts) and rollouts are the recorded ones anywhere."""
        target = self.recording.header.get("target") if self.recording is not None else None
        return target if isinstance(target, dict) else None

    def begin(self, workload: Any, seed: Optional[int] = None, threads: Optional[int] = None,
              strategy: str = "mcts", run_id: str = "", target: Any = None) -> None:
        """Start of a tune: remember the FLOP count; start the recording, or check the replayed one."""
        self.flops = getattr(workload, "flops", None)
        key = getattr(workload, "key", "")
        if self.recording is not None:
            recorded = self.recording.header.get("workload")
            if recorded and key and recorded != key:
                raise ValueError(f"the LLM recording {self.recording.path} is of another program "
                                 f"(workload {recorded}, this one is {key})")
        if self.recorder is not None:
            self.recorder.start(workload=key, workload_name=getattr(workload, "name", ""), seed=seed,
                                threads=threads, strategy=strategy, run_id=run_id, model=self.stats.model,
                                base_url=self.stats.base_url, price=self.stats.price,
                                target=dataclasses.asdict(target) if target is not None else None)

    def wrap_measurer(self, measurer: Any) -> Any:
        """Record mode: record every measurement. Replay mode: answer from the recording."""
        if self.recorder is not None:
            return RecordingMeasurer(measurer, self.recorder)
        if self.recording is not None:
            self._replay_measurer = ReplayMeasurer(measurer, self.recording)
            return self._replay_measurer
        return measurer

    def finish(self) -> LLMStats:
        """End of a tune: fold the replay counters into the stats."""
        if isinstance(self.client, ReplayClient):
            self.stats.replay_mismatches = self.client.mismatches
        if self._replay_measurer is not None:
            self.stats.replay_samples = self._replay_measurer.replayed
            self.stats.replay_measured = self._replay_measurer.measured
        return self.stats

    # -- the proposer ------------------------------------------------------------------------------
    def propose(self, context: Context, n: int) -> list[Proposal]:
        self.stats.requests += 1
        entry: dict[str, Any] = {"call": self.stats.requests, "trace": [s.to_json() for s in context.schedule.steps]}
        self.history.append(entry)
        heuristic = self.fallback.propose(context, max(n, self.candidates))
        if self.stats.disabled:
            return self._fall_back(heuristic, n, entry, "llm turned off")
        shown = heuristic[:self.candidates]
        key = tuple(context.schedule.steps)
        tried = {tuple(t) for t in context.tried}
        unused = [p for p in self._unused.pop(key, []) if p.steps not in tried]
        if unused:      # this node's last answer still holds proposals: no call needed
            self.stats.answers_reused += 1
            entry["reused_answer"] = True
            out = merge(heuristic, unused, n)
            self._unused[key] = [p for p in unused if p not in out]
            return out
        candidates = [p.steps for p in shown]
        wanted = max(n, 2)      # one answer serves this node's next expansion too
        schema = prompt.answer_schema(context.schedule, proposals=wanted, steps=6, candidates=len(candidates))
        while True:
            level, chat = prompt.fitting(context, wanted, self._prompt_budget(), start=self._level,
                                         ancestor_depth=self.ancestor_depth, peak_gflops=self.peak_gflops,
                                         flops=self.flops, candidates=candidates, system_role=self.system_role)
            try:
                completion = self.client.complete(chat, schema)
                break
            except LLMContextError as error:
                if self._shrink(error, level, chat):
                    continue
                return self._failed(error, heuristic, n, entry)
            except LLMError as error:
                return self._failed(error, heuristic, n, entry)
        self.stats.prompt_levels[level] += 1
        self.stats.dialects[str(getattr(self.client, "last_dialect", "text"))] += 1
        entry["prompt_level"] = level
        parsed = parse_response(completion.text, context.schedule)
        own = self._accept(parsed, context, entry)
        chosen = [shown[i - 1] for i in dict.fromkeys(parsed.choice) if 1 <= i <= len(shown)]
        entry["choice"] = list(parsed.choice)
        self.stats.choices += len(chosen)
        if not own and not chosen:
            reason = "empty answer" if not completion.text.strip() else \
                "unreadable answer" if parsed.error else "no valid proposal"
            return self._fall_back(heuristic, n, entry, reason)
        self.stats.answers_usable += 1
        out = merge(heuristic, own, n, chosen)
        self._unused[key] = [p for p in own if p not in out]
        return out

    def _prompt_budget(self) -> Optional[int]:
        """Tokens the prompt may take: the context window less the answer's cap (None: unknown)."""
        discover = getattr(self.client, "discover_context", None)
        window = discover() if discover is not None else None
        if not window:
            return None
        return max(64, int(window) - int(getattr(self.client, "max_output_tokens", None) or 1024) - 32)

    def _shrink(self, error: LLMContextError, level: str, chat: list[dict[str, str]]) -> bool:
        """After a context overflow: learn the window, allow only smaller prompts; False when the
        smallest did not fit either (the LLM is then turned off: it would fail at every node)."""
        if error.context_tokens and hasattr(self.client, "context_tokens"):
            self.client.context_tokens = error.context_tokens
        self._level = prompt.LEVELS.index(level) + 1
        if self._level < len(prompt.LEVELS):
            log.info("LLM proposer: the %s prompt overflowed the model's context; sending smaller ones", level)
            return True
        window = f"{error.context_tokens} tokens" if error.context_tokens else "too small"
        error.fatal = True
        error.args = (f"the model's context window ({window}) cannot hold even the most compact prompt "
                      f"(~{prompt.estimate_tokens(chat)} tokens) and an answer: serve the model with a larger "
                      f"context (llama.cpp: --n_ctx 8192) [{error}]",)
        return False

    def _failed(self, error: LLMError, heuristic: list[Proposal], n: int, entry: dict[str, Any]) -> list[Proposal]:
        if not self.fallback_on_error and not isinstance(error, LLMCapReached):
            raise error   # (a cap is a budget, not a failure: reaching it always continues on the heuristic)
        if error.fatal:
            self.stats.disabled = str(error)
            log.warning("LLM proposer: %s — continuing with the heuristic proposer", error)
        else:
            log.warning("LLM proposer: %s — using the heuristic proposer for this node", error)
        return self._fall_back(heuristic, n, entry, type(error).__name__)

    def _accept(self, parsed: Parsed, context: Context, entry: dict[str, Any]) -> list[Proposal]:
        """Count and log what the model proposed; the new, non-empty, distinct proposals."""
        entry.update(reasoning=parsed.reasoning, error=parsed.error, proposals=[])
        self.stats.repaired_answers += parsed.repaired
        tried = {tuple(t) for t in context.tried}
        out: list[Proposal] = []
        for p in parsed.proposals:
            entry["proposals"].append({"reasoning": p.reasoning, "steps": [
                {"step": note.raw, "kept": note.kept, "reason": note.reason, "reasoning": note.reasoning}
                for note in p.notes]})
            self.stats.steps_proposed += len(p.notes)
            self.stats.steps_kept += len(p.steps)
            self.stats.dropped += [(note.describe(), note.reason) for note in p.dropped]
            steps = p.steps
            if not steps or steps in tried or any(steps == q.steps for q in out):
                continue
            out.append(Proposal(steps, _reasoning(p.reasoning or parsed.reasoning, p)))
        self.stats.proposals += len(out)
        return out

    def _fall_back(self, heuristic: list[Proposal], n: int, entry: dict[str, Any], reason: str) -> list[Proposal]:
        self.stats.fallbacks += 1
        self.stats.fallback_reasons[reason] += 1
        entry["fallback"] = reason
        return [Proposal(p.steps, f"[heuristic fallback: {reason}] {p.reasoning}") for p in heuristic[:n]]


def merge(heuristic: Sequence[Proposal], own: Sequence[Proposal], n: int,
          chosen: Sequence[Proposal] = ()) -> list[Proposal]:
    """The first ``n`` distinct proposals: the heuristic's first variant (so whatever the model
    says, the search measures what the heuristic alone would), then the model's own proposals
    and the heuristic's other variants in turn, those the model chose first, in its order."""
    ranked = list(chosen) + [p for p in heuristic[1:] if p not in chosen]
    out: list[Proposal] = list(heuristic[:1])
    for pair in zip_longest(own, ranked):
        for proposal in pair:
            if proposal is not None and all(proposal.steps != p.steps for p in out):
                out.append(proposal)
    return out[:n]


def _reasoning(why: str, proposal: Any) -> str:
    """The proposal's reasoning with each step's own reasoning and each dropped step beside it."""
    lines = [why.strip() or "(no reasoning given)"]
    for note in proposal.notes:
        if note.kept:
            lines.append(f"  {note.describe()}")
        else:
            lines.append(f"  dropped {note.describe()}: {note.reason}")
    return "\n".join(lines)


def _price(value: Any) -> Optional[tuple[float, float]]:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return (float(value[0]), float(value[1]))
    return None


@dataclass(frozen=True)
class LLMConfig:
    """How to reach and use the model; unset fields come from the environment ($OPENAI_BASE_URL,
    $OPENAI_API_KEY, $MINICOMPILER_LLM_MODEL). ``record`` / ``replay`` name a recording file."""

    model: Optional[str] = None
    base_url: Optional[str] = None
    api_key: Optional[str] = field(default=None, repr=False)
    timeout_s: float = 60.0
    max_calls: Optional[int] = None
    max_tokens: Optional[int] = None
    record: str | Path | None = None
    replay: str | Path | None = None
    fallback: bool = True            # on an unusable endpoint, go on with the heuristic proposer
    ancestor_depth: int = 2
    structured: bool = True          # ask for answers constrained to the JSON schema (where the server can)
    context_tokens: Optional[int] = None   # the model's context window (unset: asked of the server, or learned)
    temperature: Optional[float] = 0.2
    max_output_tokens: Optional[int] = 1024
    stream: Optional[bool] = None    # stream answers (cancellable); default: on for a server on this machine
    system_role: Optional[bool] = None     # the chat template has a system role (default: not for Gemma)
    candidates: int = 4              # heuristic variants shown to the model to choose among
    prompt: Optional[str] = None     # the most detailed prompt level to send (None: the largest that fits)


def make_proposer(config: Optional[LLMConfig] = None, **client_options: Any) -> LLMProposer:
    """The LLM proposer for ``config`` (``tune(proposer="llm", llm=config)`` builds it)."""
    config = config or LLMConfig()
    client = None if config.replay is not None else LLMClient(
        model=config.model, base_url=config.base_url, api_key=config.api_key, timeout_s=config.timeout_s,
        max_calls=config.max_calls, max_tokens=config.max_tokens, structured=config.structured,
        context_tokens=config.context_tokens, temperature=config.temperature,
        max_output_tokens=config.max_output_tokens, stream=config.stream, **client_options)
    peak = os.environ.get("MINICOMPILER_PEAK_GFLOPS")
    return LLMProposer(client, record=config.record, replay=config.replay, ancestor_depth=config.ancestor_depth,
                       fallback_on_error=config.fallback, peak_gflops=float(peak) if peak else None,
                       candidates=config.candidates, system_role=config.system_role, prompt_level=config.prompt)


__all__ = ["LLMProposer", "LLMStats", "LLMConfig", "make_proposer", "merge"]
