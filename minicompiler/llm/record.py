"""Record a tune's LLM conversation and measurements; replay it offline, making the same decisions.

A recording is JSON lines, one event per line, appended (and flushed) as the tune runs:

    {"kind": "header", "version": 1, "workload": "...", "model": "...", "base_url": "...", "seed": 7, ...}
    {"kind": "llm", "index": 0, "request_hash": "...", "messages": [...], "response_text": "...",
     "usage": {"prompt_tokens": ..., "completion_tokens": ...}, "latency_s": ..., "model": "..."}
    {"kind": "llm", "index": 1, ..., "error": {"type": "LLMTimeout", "message": "...", "fatal": false}}
    {"kind": "sample", "steps": [...], "status": "ok", "time_s": 1.2e-05, "compile_s": 0.03, "error": ""}

No key, no headers: only the messages we built, the text the model returned, the usage
numbers and our own error messages (already redacted) — and every line is scrubbed of the
key again before it is written.

Why measurements are recorded too. What the search does next depends on measured times
(UCT rewards choose the node to expand; the prompt shows the times). Re-measuring on replay
gives slightly different times, so the search could expand another node and the recorded
answers would no longer fit. So a replay answers *both* from the recording:

- the i-th LLM call gets the i-th recorded outcome (answer or error): order is what makes a
  replay follow the recording even if a prompt's text changes slightly (another machine's
  target line); the request hash is still compared and any mismatch is counted;
- a candidate whose trace was measured in the recording gets the recorded result (status,
  time) instead of being timed again; only a trace the recording never measured is measured
  for real (and counted as a divergence).

With both, the replayed tune sees exactly the inputs the recorded one saw, so it expands the
same nodes, gets the same proposals, and measures the same candidates in the same order: the
same trace and the same database sequence, with no endpoint and no spend. (It replays on the
machine it was recorded on; a different target changes the heuristic parts of the search.)
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any, Optional, Sequence

from minicompiler.schedule import Step

from .client import Completion, LLMError, Usage, make_error, redact

VERSION = 1


def request_hash(messages: list[dict[str, str]]) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:24]


def _trace_key(steps: Sequence[Any]) -> str:
    return json.dumps([s.to_json() if isinstance(s, Step) else s for s in steps], sort_keys=True)


class Recorder:
    """Appends events to a recording; the file is started afresh by ``start``."""

    def __init__(self, path: str | Path, secrets: Sequence[str] = ()) -> None:
        self.path = Path(path)
        self._secrets = tuple(secrets)
        self._index = 0
        self._started = False

    def start(self, **header: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("")
        self._index, self._started = 0, True
        self._write({"kind": "header", "version": VERSION, **header})

    def _write(self, event: dict[str, Any]) -> None:
        if not self._started:        # used outside tune(): a header without the tune's details
            self.start()
        line = redact(json.dumps(event, sort_keys=True), self._secrets)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()

    def llm(self, messages: list[dict[str, str]], completion: Optional[Completion] = None,
            error: Optional[LLMError] = None, latency_s: float = 0.0, dialect: str = "") -> None:
        event: dict[str, Any] = {"kind": "llm", "index": self._index, "request_hash": request_hash(messages),
                                 "messages": messages}
        if dialect:
            event["dialect"] = dialect       # the response format the answer was constrained by
        if completion is not None:
            event.update(response_text=completion.text, latency_s=completion.latency_s, model=completion.model,
                         usage={"prompt_tokens": completion.prompt_tokens,
                                "completion_tokens": completion.completion_tokens,
                                "estimated": completion.usage_estimated})
        if error is not None:
            event.update(latency_s=latency_s, error={"type": type(error).__name__, "message": str(error),
                                                     "fatal": bool(error.fatal),
                                                     "context_tokens": getattr(error, "context_tokens", None)})
        self._index += 1
        self._write(event)

    def sample(self, steps: Sequence[Step], result: Any) -> None:
        self._write({"kind": "sample", "steps": [s.to_json() for s in steps], "status": result.status,
                     "time_s": result.time_s, "compile_s": getattr(result, "compile_s", 0.0),
                     "error": getattr(result, "error", "")})


class Recording:
    """A recording read back: the header, the LLM outcomes in order, the samples by trace."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise ValueError(f"no LLM recording at {self.path} (make one with llm_record= / --llm-record)")
        self.header: dict[str, Any] = {}
        self.calls: list[dict[str, Any]] = []
        self.samples: dict[str, list[dict[str, Any]]] = {}   # every measurement of a trace, in order
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                raise ValueError(f"{self.path}:{number} is not a JSON line of an LLM recording") from None
            kind = event.get("kind")
            if kind == "header":
                self.header = event
            elif kind == "llm":
                self.calls.append(event)
            elif kind == "sample":
                self.samples.setdefault(_trace_key(event["steps"]), []).append(event)
        if self.header.get("version") != VERSION:
            raise ValueError(f"{self.path} is not an LLM recording of version {VERSION}")

    def sample(self, steps: Sequence[Step], repeat: int = 0) -> Optional[dict[str, Any]]:
        """The ``repeat``-th recorded measurement of this trace (a tune re-measures its fastest
        schedules after the search: see ``Session.confirm``); the last one when there are fewer."""
        events = self.samples.get(_trace_key(steps))
        return events[min(repeat, len(events) - 1)] if events else None


class ReplayClient:
    """Answers the i-th call with the i-th recorded outcome; never touches the network."""

    def __init__(self, recording: Recording) -> None:
        self.recording = recording
        self.model = str(recording.header.get("model", "replay"))
        self.base_url = f"replay of {recording.path}"
        self.price = None
        self.secrets: tuple[str, ...] = ()
        self.usage = Usage()
        self.position = 0
        self.mismatches = 0          # calls whose prompt differs from the recorded one
        self.last_dialect = "text"

    def complete(self, messages: list[dict[str, str]], schema: Optional[dict] = None) -> Completion:
        if self.position >= len(self.recording.calls):
            self.usage.failed_calls += 1
            raise LLMError(f"the recording {self.recording.path} has no answer for LLM call "
                           f"{self.position + 1} (it holds {len(self.recording.calls)})")
        event = self.recording.calls[self.position]
        self.position += 1
        self.last_dialect = str(event.get("dialect", "text"))
        if event.get("request_hash") != request_hash(messages):
            self.mismatches += 1
        if "error" in event:
            error = event["error"]
            self.usage.failed_calls += 1
            self.usage.latency_s += float(event.get("latency_s", 0.0))
            raise make_error(error.get("type", "LLMError"), error.get("message", ""), bool(error.get("fatal")),
                             error.get("context_tokens"))
        usage = event.get("usage", {})
        completion = Completion(str(event.get("response_text", "")), int(usage.get("prompt_tokens", 0)),
                                int(usage.get("completion_tokens", 0)), float(event.get("latency_s", 0.0)),
                                str(event.get("model", self.model)), 1, bool(usage.get("estimated", False)))
        self.usage.add(completion)
        return completion


class RecordingClient:
    """Wraps a live client: every outcome of ``complete`` is appended to the recording."""

    def __init__(self, client: Any, recorder: Recorder) -> None:
        self.client, self.recorder = client, recorder

    def __getattr__(self, name: str) -> Any:     # model, base_url, usage, price, secrets
        return getattr(self.client, name)

    def complete(self, messages: list[dict[str, str]], schema: Optional[dict] = None) -> Completion:
        import time
        start = time.perf_counter()
        try:
            completion = self.client.complete(messages, schema)
        except LLMError as error:
            self.recorder.llm(messages, error=error, latency_s=time.perf_counter() - start)
            raise
        self.recorder.llm(messages, completion, dialect=str(getattr(self.client, "last_dialect", "text")))
        return completion


class RecordingMeasurer:
    """Measures for real and records each result (record mode)."""

    def __init__(self, measurer: Any, recorder: Recorder) -> None:
        self.measurer, self.recorder = measurer, recorder

    def measure(self, steps: Sequence[Step]) -> Any:
        result = self.measurer.measure(steps)
        self.recorder.sample(tuple(steps), result)
        return result

    def close(self) -> None:
        self.measurer.close()


class ReplayMeasurer:
    """Answers candidates the recording measured from the recording; measures any other for real."""

    def __init__(self, measurer: Any, recording: Recording) -> None:
        self.measurer, self.recording = measurer, recording
        self.replayed = 0
        self.measured = 0            # candidates the recording did not have: a divergence
        self._asked: Counter[str] = Counter()   # how often each trace was measured so far

    def measure(self, steps: Sequence[Step]) -> Any:
        from minicompiler.search.measure import MeasureResult
        key = _trace_key(steps)
        event = self.recording.sample(tuple(steps), self._asked[key])
        self._asked[key] += 1
        if event is None:
            self.measured += 1
            return self.measurer.measure(steps)
        self.replayed += 1
        return MeasureResult(event["status"], event.get("time_s"), [], float(event.get("compile_s", 0.0)),
                             str(event.get("error", "")))

    def close(self) -> None:
        self.measurer.close()
