"""The LLM proposer against a real HTTP server on loopback that speaks the chat-completions API.

Each test starts ``ChatServer`` (a ``ThreadingHTTPServer`` on 127.0.0.1, port 0) whose answers
come from a script: a queue of behaviours (a good answer built from the loop names in the
prompt, prose around JSON, malformed JSON, illegal steps, an empty answer, 429, 5xx, a
response slower than the client's timeout, 401), then a default. Every tune must finish with
a correct kernel, or — for a refused key without fallback — fail with a clear message. The API
key is distinctive, and no file, log or output may contain it.
"""
from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest

import minicompiler as mc
from hypothesis import given, settings, strategies as st

from minicompiler.llm import LLMAuthError, LLMClient, LLMProposer, LLMResponseError, LLMUnreachable
from minicompiler.llm.client import LLMCapReached, price_for, redact
from minicompiler.llm.parse import extract_json, parse_response, repair, to_step, StepError
from minicompiler.llm.prompt import MAX_IR_CHARS, messages
from minicompiler.schedule import PRIMITIVES
from minicompiler.search.database import Database
from minicompiler.search.proposer import Context
from minicompiler.search.workload import Workload

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-test-ZZsecretKEY4242424242"      # distinctive: it must never be written anywhere


# ------------------------------------------------------------------------------------------ server
def _loops(prompt: str) -> list[tuple[str, int, str]]:
    """(name, extent, kind+role) of every loop in the prompt's loop-nest lines."""
    found = []
    for line in prompt.splitlines():
        if line.startswith("- writes "):
            found += [(m.group(1), int(m.group(2)), m.group(3))
                      for m in re.finditer(r"(\w+)\[(\d+)([^\]]*)\]", line)]
    return found


def _tried(prompt: str) -> set[str]:
    part = prompt.split("## Already tried", 1)
    lines = part[1].split("##")[0].splitlines() if len(part) == 2 else []
    return {json.dumps(json.loads(l[2:]), sort_keys=True) for l in lines if l.startswith("- [")}


def good_answer(prompt: str, n: int = 2) -> str:
    """Legal steps for the program in the prompt: tile i/j if untouched, else splits of serial loops."""
    loops = _loops(prompt)
    names = {name for name, _, _ in loops}
    candidates: list[dict[str, Any]] = []
    if {"i", "j", "k"} <= names:
        candidates.append({"reasoning": "register tile: 4 rows x 16 lanes of accumulators",
                           "steps": [{"op": "tile", "outer_loop": "i", "inner_loop": "j", "outer_factor": 4,
                                      "inner_factor": 16, "reasoning": "4x16 tile fits the vector registers"}]})
    for factor in (2, 4, 8):
        for name, extent, kind in loops:
            if "," not in kind.split(";")[0] and extent > factor:   # a serial loop: split is legal
                candidates.append({"reasoning": f"block {name} by {factor}",
                                   "steps": [{"op": "split", "loop": name, "factor": factor,
                                              "reasoning": f"{factor} iterations per block"}]})
    tried = _tried(prompt)
    fresh = [c for c in candidates
             if json.dumps([{k: v for k, v in s.items() if k != "reasoning"} for s in c["steps"]],
                           sort_keys=True) not in tried]
    return json.dumps({"reasoning": "the loop nest is untiled and scalar", "proposals": fresh[:n]})


ILLEGAL = {"reasoning": "bold ideas", "proposals": [
    {"reasoning": "all wrong", "steps": [
        {"op": "parallel", "loop": "k"},                       # a reduction loop
        {"op": "split", "loop": "no_such_loop", "factor": 4},  # not a loop
        {"op": "explode", "loop": "i"},                        # not a transformation
        {"op": "vectorize", "loop": "i_init", "factor": 3},    # not a parameter
        {"op": "split", "loop": "j", "factor": -2}]},          # not a factor
    {"reasoning": "also wrong", "steps": ["__import__('os').system('touch PWNED')", {"op": "fuse"}]}]}


class ChatServer:
    """A scripted OpenAI chat-completions endpoint on loopback."""

    def __init__(self, default: str = "good", max_requests: int = 200) -> None:
        self.script: deque[str] = deque()
        self.default, self.max_requests = default, max_requests
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str] = []
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0}   # what it reported, for 200s
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with server.lock:
                    server.requests.append(body)
                    server.auth.append(self.headers.get("Authorization", ""))
                    if len(server.requests) > server.max_requests:
                        return self._send(500, {"error": {"message": "too many requests for this test"}})
                    behaviour = server.script.popleft() if server.script else server.default
                server.answer(self, behaviour, body)

            def _send(self, status: int, payload: dict, headers: Optional[dict] = None) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass   # the client gave up (timeout): fine

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/v1"

    def queue(self, *behaviours: str) -> "ChatServer":
        self.script.extend(behaviours)
        return self

    def answer(self, handler: Any, behaviour: str, body: dict) -> None:
        prompt = body["messages"][-1]["content"]
        n = int(m.group(1)) if (m := re.search(r"Propose (\d+) different", prompt)) else 2
        if behaviour == "401":
            return handler._send(401, {"error": {"message": f"Incorrect API key provided: {KEY}",
                                                 "type": "invalid_request_error", "code": "invalid_api_key"}})
        if behaviour == "429":
            return handler._send(429, {"error": {"message": "Rate limit reached", "type": "requests"}},
                                 {"Retry-After": "0"})
        if behaviour == "503":
            return handler._send(503, {"error": {"message": f"overloaded (key {KEY})"}})
        if behaviour == "slow":
            time.sleep(2.5)
            behaviour = "good"
        if behaviour == "not_a_completion":
            return handler._send(200, {"object": "error", "detail": "this is not a chat completion"})
        content = {
            "good": lambda: good_answer(prompt, n),
            "prose": lambda: "Looking at the nest, the inner loop is scalar. I would tile it.\n" + good_answer(prompt, n)
                             + "\nThese should vectorize well. Let me know!",
            "fenced_slips": lambda: "Reasoning: tile.\n```json\n" + good_answer(prompt, n).replace('"', "'")
                                    .replace("]}", ",]}") + "\n```\n",
            "malformed": lambda: '{"proposals": [ {"steps": [ {"op": "split" "loop": "i" factor 4 ] ]',
            "illegal": lambda: json.dumps(ILLEGAL),
            "empty": lambda: "",
        }[behaviour]()
        usage = {"prompt_tokens": len(prompt) // 4, "completion_tokens": max(1, len(content) // 4)}
        with self.lock:
            for k in usage:
                self.usage[k] += usage[k]
        handler._send(200, {
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": 1700000000,
            "model": body.get("model", "scripted"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {**usage, "total_tokens": sum(usage.values())}})

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = ChatServer()
    yield s
    s.stop()


def _matmul(n: int = 32):
    A = mc.placeholder((n, n), name="A")
    B = mc.placeholder((n, n), name="B")
    k = mc.reduce_axis(n, "k")
    return mc.compute((n, n), lambda i, j: mc.sum(A[i, k] * B[k, j], axis=k), name="C")


def _proposer(server: ChatServer, **options: Any) -> LLMProposer:
    client_options = {k: options.pop(k) for k in ("timeout_s", "max_retries", "max_calls", "max_tokens")
                      if k in options}
    client = LLMClient(model="scripted-model", base_url=server.url, api_key=KEY, backoff_s=0.01,
                       **{"timeout_s": 5.0, "max_retries": 2, **client_options})
    return LLMProposer(client, **options)


def _tune(C, tmp_path: Path, proposer: Any, budget: int = 6, db: str = "db.sqlite", **kw: Any):
    return mc.tune(C, budget=budget, proposer=proposer, database=tmp_path / db, seed=0, threads=1,
                   **{"progress": False, **kw})


def _check_correct(result, budget: int = 6) -> None:  # noqa: ANN001
    assert result.samples == budget and result.best_time_s is not None
    a, b = np.random.default_rng(0).random((2, 32, 32), dtype=np.float32)
    np.testing.assert_allclose(result.kernel(a, b), a @ b, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------ scenarios
def test_good_answers_drive_the_search_and_are_counted(server: ChatServer, tmp_path: Path) -> None:
    C = _matmul()
    result = _tune(C, tmp_path, _proposer(server), budget=10)
    _check_correct(result, 10)
    stats = result.llm_stats
    assert stats.calls == len(server.requests) >= 3 and stats.fallbacks == 0 and stats.dropped == []
    assert (stats.prompt_tokens, stats.completion_tokens) == (server.usage["prompt_tokens"],
                                                              server.usage["completion_tokens"])
    assert stats.latency_s > 0 and stats.cost_usd is None            # no price for a local endpoint
    assert set(server.auth) == {f"Bearer {KEY}"}                     # the key is sent, and only there
    assert all(r["model"] == "scripted-model" for r in server.requests)
    first, later = server.requests[0]["messages"], server.requests[-1]["messages"]
    assert all(op in first[0]["content"] for op in PRIMITIVES)       # the vocabulary
    # The target as the kernel gets it: this machine, with the tune's one thread as its cores.
    assert mc.Target.host().with_(cores=1).describe() in first[1]["content"] and "lanes" in first[1]["content"]
    assert "for k in range(32)" in first[1]["content"]                # the program
    assert "Already tried from this program" in server.requests[1]["messages"][1]["content"]
    assert "Parent program" in later[1]["content"]                    # ancestors, with their times
    # The model's reasoning is kept beside each step: in the tree and in the proposer's history.
    reasons = [result.tree.nodes[n]["reasoning"] for n in result.tree.nodes if n]
    assert any("4 rows x 16 lanes" in r and "# 4x16 tile fits" in r for r in reasons)
    assert "fallback rate: 0%" in stats.summary()


@pytest.mark.parametrize("behaviour", ["prose", "fenced_slips"])
def test_prose_code_fences_and_small_slips_are_read(server: ChatServer, tmp_path: Path, behaviour: str) -> None:
    server.default = behaviour
    result = _tune(_matmul(), tmp_path, _proposer(server))
    _check_correct(result)
    assert result.llm_stats.fallbacks == 0 and result.llm_stats.proposals >= 2
    assert result.llm_stats.repaired_answers == (0 if behaviour == "prose" else result.llm_stats.calls)


@pytest.mark.parametrize("behaviour, reason", [("malformed", "unreadable answer"), ("empty", "empty answer"),
                                                ("illegal", "no valid proposal")])
def test_unusable_answers_fall_back_to_the_heuristic(server: ChatServer, tmp_path: Path, behaviour: str,
                                                     reason: str) -> None:
    server.default = behaviour
    result = _tune(_matmul(), tmp_path, _proposer(server))
    _check_correct(result)
    stats = result.llm_stats
    assert stats.calls >= 1 and stats.fallbacks == stats.requests == stats.calls   # every one fell back
    assert stats.fallback_rate == 1.0 and dict(stats.fallback_reasons) == {reason: stats.requests}
    assert all(s.op in PRIMITIVES for s in result.best_steps)
    if behaviour == "illegal":
        why = " | ".join(r for _, r in stats.dropped)
        assert stats.steps_kept == 0 and len(stats.dropped) == 7 * stats.calls
        for expected in ("reduction loop", "no loop named 'no_such_loop'", "unknown transformation 'explode'",
                         "not 'factor'", "positive integer", "unknown transformation 'system'", "fuse"):
            assert expected in why
        assert not (ROOT / "PWNED").exists() and not Path("PWNED").exists()


def test_a_429_is_retried_then_succeeds(server: ChatServer, tmp_path: Path) -> None:
    server.queue("429", "503")
    result = _tune(_matmul(), tmp_path, _proposer(server))
    _check_correct(result)
    stats = result.llm_stats
    assert stats.usage.retries == 2 and stats.fallbacks == 0
    assert stats.usage.requests == len(server.requests) == stats.calls + 2


def test_a_response_slower_than_the_timeout_falls_back_for_that_node(server: ChatServer, tmp_path: Path) -> None:
    server.queue("slow")
    start = time.perf_counter()
    result = _tune(_matmul(), tmp_path, _proposer(server, timeout_s=1.0, max_retries=0))
    _check_correct(result)
    stats = result.llm_stats
    assert dict(stats.fallback_reasons) == {"LLMTimeout": 1} and not stats.disabled
    assert stats.calls >= 1 and stats.usage.failed_calls == 1        # later calls were answered
    assert time.perf_counter() - start < 30


def test_a_refused_key_with_fallback_continues_on_the_heuristic(server: ChatServer, tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    server.default = "401"
    with caplog.at_level(logging.DEBUG):
        result = _tune(_matmul(), tmp_path, _proposer(server))
    _check_correct(result)
    stats = result.llm_stats
    assert len(server.requests) == 1                        # not asked again after a refused key
    assert stats.fallbacks == stats.requests and "refused the API key" in stats.disabled
    assert "refused the API key" in caplog.text and KEY not in caplog.text and KEY not in stats.summary()


def test_a_refused_key_without_fallback_fails_clearly(server: ChatServer, tmp_path: Path) -> None:
    server.default = "401"
    with pytest.raises(LLMAuthError) as info:
        _tune(_matmul(), tmp_path, _proposer(server, fallback_on_error=False))
    message = str(info.value)
    assert "refused the API key" in message and "OPENAI_API_KEY" in message and "401" in message
    assert KEY not in message and KEY not in repr(info.value.args)


def test_an_unreachable_endpoint_is_a_clear_error(tmp_path: Path) -> None:
    dead = ChatServer()
    dead.stop()                                             # the port is closed now
    client = LLMClient(base_url=dead.url, api_key=KEY, max_retries=1, backoff_s=0.01)
    with pytest.raises(LLMUnreachable, match="cannot reach the LLM endpoint .*is the server running"):
        client.complete([{"role": "user", "content": "hi"}])
    assert client.usage.requests == 2 and client.usage.failed_calls == 1
    result = _tune(_matmul(), tmp_path, LLMProposer(LLMClient(base_url=dead.url, api_key=KEY, max_retries=0)))
    _check_correct(result)
    assert result.llm_stats.fallback_rate == 1.0 and "cannot reach" in result.llm_stats.disabled


def test_caps_on_calls_and_tokens_stop_asking(server: ChatServer, tmp_path: Path) -> None:
    result = _tune(_matmul(), tmp_path, _proposer(server, max_calls=1))
    _check_correct(result)
    assert result.llm_stats.calls == 1 == len(server.requests)
    assert result.llm_stats.fallback_reasons["LLMCapReached"] >= 1
    client = LLMClient(base_url=server.url, api_key=KEY, max_tokens=10)
    client.complete([{"role": "user", "content": "Propose 1 different" + " x" * 100}])   # > 10 tokens
    with pytest.raises(LLMCapReached, match="10 LLM tokens"):
        client.complete([{"role": "user", "content": "again"}])
    assert server.requests[-1]["max_tokens"] == 10


def test_the_key_never_reaches_the_database_the_recording_or_the_logs(
        server: ChatServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture) -> None:
    server.queue("good", "503", "503", "503")               # an error whose server text echoes the key
    with caplog.at_level(logging.DEBUG):
        result = _tune(_matmul(), tmp_path, _proposer(server, record=tmp_path / "rec.jsonl"), progress=True)
    _check_correct(result)
    assert result.llm_stats.fallback_reasons["LLMServerError"] == 1
    out, err = capfd.readouterr()
    for text in ((tmp_path / "db.sqlite").read_bytes().decode("utf-8", "replace"), (tmp_path / "rec.jsonl").read_text(), caplog.text, out, err,
                 result.llm_stats.summary(), json.dumps(result.llm_stats.to_dict())):
        assert KEY not in text
    assert "overloaded (key ***)" in (tmp_path / "rec.jsonl").read_text()


def test_replaying_a_recording_offline_makes_the_same_decisions(server: ChatServer, tmp_path: Path) -> None:
    C = _matmul()
    recording = tmp_path / "session.jsonl"
    server.queue("good", "illegal", "prose", "slow")        # a mixed session: fallbacks are replayed too
    recorded = _tune(C, tmp_path, _proposer(server, record=recording, timeout_s=1.0, max_retries=0), budget=8,
                     db="recorded.sqlite")
    server.stop()                                           # offline from here on
    replayed = mc.tune(C, budget=8, proposer="llm", llm={"replay": str(recording)}, database=tmp_path / "replayed.sqlite",
                       threads=1, progress=False)
    steps = lambda name: [r["steps"] for r in Database(tmp_path / name).records() if r["strategy"] != "confirm"]  # noqa: E731
    assert steps("replayed.sqlite") == steps("recorded.sqlite") and len(steps("recorded.sqlite")) == 8
    # The re-measurements of the fastest after the search are recorded and replayed as well.
    confirm = lambda name: [(r["steps"], r["time_s"]) for r in Database(tmp_path / name).records(strategy="confirm")]  # noqa: E731
    assert confirm("replayed.sqlite") == confirm("recorded.sqlite") and confirm("recorded.sqlite")
    assert replayed.best_steps == recorded.best_steps and replayed.trace() == recorded.trace()
    assert replayed.best_time_s == recorded.best_time_s
    assert [(s.status, s.time_s) for s in replayed.history] == [(s.status, s.time_s) for s in recorded.history]
    a, b = recorded.llm_stats, replayed.llm_stats
    assert a.calls >= 3 and a.fallback_reasons["LLMTimeout"] == 1 and a.fallback_reasons["no valid proposal"] == 1
    assert b.mode == "replay" and (b.calls, b.tokens, b.fallbacks) == (a.calls, a.tokens, a.fallbacks)
    assert dict(b.fallback_reasons) == dict(a.fallback_reasons) and b.dropped == a.dropped
    assert b.replay_mismatches == 0 and b.replay_measured == 0
    assert b.replay_samples == 8 + len(confirm("recorded.sqlite"))
    assert KEY not in recording.read_text()


def test_cli_tune_with_the_llm_proposer_reports_calls_tokens_and_fallback_rate(server: ChatServer,
                                                                               tmp_path: Path) -> None:
    env = {**os.environ, "OPENAI_API_KEY": KEY, "PYTHONPATH": str(ROOT)}
    env.pop("OPENAI_BASE_URL", None)
    out = subprocess.run([sys.executable, "-m", "minicompiler", "tune", "ik,kj->ij", "--size", "i=32,j=32,k=32",
                          "--budget", "5", "--proposer", "llm", "--llm-base-url", server.url, "--threads", "1",
                          "--seed", "0", "--db", str(tmp_path / "db.sqlite"), "--llm-record",
                          str(tmp_path / "rec.jsonl")], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stderr
    assert re.search(r"calls: [1-9]\d* answered", out.stdout) and "prompt +" in out.stdout
    assert "completion tokens" in out.stdout and "fallback rate: 0%" in out.stdout, out.stdout
    assert set(server.auth) == {f"Bearer {KEY}"}
    for text in (out.stdout, out.stderr, (tmp_path / "db.sqlite").read_bytes().decode("utf-8", "replace"), (tmp_path / "rec.jsonl").read_text()):
        assert KEY not in text
    server.default = "401"
    out = subprocess.run([sys.executable, "-m", "minicompiler", "tune", "ik,kj->ij", "--size", "i=32,j=32,k=32",
                          "--budget", "3", "--proposer", "llm", "--llm-base-url", server.url, "--threads", "1",
                          "--no-llm-fallback", "--db", str(tmp_path / "db.sqlite")],
                         capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert out.returncode == 3 and "refused the API key" in out.stderr and KEY not in out.stderr + out.stdout


# ------------------------------------------------------------------------------------------ units
def test_json_is_found_and_repaired_never_evaluated() -> None:
    assert extract_json('Sure:\n```json\n{"a": [1, 2,],}\n```\nbye')[0] == {"a": [1, 2]}
    assert extract_json("think... {'a': True, 'b': None} done")[0] == {"a": True, "b": None}
    assert extract_json('{"proposals": [{"steps": [{"op": "split", "loop": "i"')[0] == \
        {"proposals": [{"steps": [{"op": "split", "loop": "i"}]}]}          # cut off mid-answer
    assert extract_json('{op: "split", // why\n loop: "i"}')[0] == {"op": "split", "loop": "i"}
    assert extract_json("")[0] is None and extract_json("no json at all")[0] is None
    assert repair("[1, 2, ]") == "[1, 2]"
    assert to_step("split(loop='i', factor=32)")[0] == mc.Step.make("split", loop="i", factor=32)
    assert to_step({"name": "reorder", "args": {"loops": ["j", "i"]}})[0] == mc.Step.make("reorder", order=["j", "i"])
    assert to_step({"op": "unroll", "loop": "i", "factor": None, "why": "small"}) == (mc.Step.make("unroll", loop="i"), "small")
    assert to_step({"op": "split", "loop": "i", "factor": "8"})[0].kwargs["factor"] == 8
    for bad in ("__import__('os').system('x')", "split(loop=open('f').read())", {"op": "split", "loop": {"x": 1}},
                {"op": "split", "loop": "i", "factor": True}, {"loop": "i"}, 42):
        with pytest.raises(StepError):
            to_step(bad)


def test_invalid_steps_are_dropped_with_reasons_and_later_steps_kept_if_they_apply() -> None:
    schedule = Workload(_matmul()).schedule()
    text = json.dumps({"proposals": [{"reasoning": "r", "steps": [
        {"op": "split", "loop": "j", "factor": 16}, {"op": "parallel", "loop": "k"},
        {"op": "vectorize", "loop": "nope"}, {"op": "split", "loop": "i", "factor": 4, "reasoning": "rows"}]}]})
    parsed = parse_response(text, schedule)
    (proposal,) = parsed.proposals
    assert proposal.steps == (mc.Step.make("split", loop="j", factor=16), mc.Step.make("split", loop="i", factor=4))
    reasons = [n.reason for n in proposal.dropped]
    assert reasons[0].startswith("cannot run k in parallel") and reasons[1].startswith("no loop named 'nope'")
    assert proposal.notes[-1].reasoning == "rows"
    schedule.replay(proposal.steps)


def test_the_prompt_is_bounded_deterministic_and_informative() -> None:
    A = mc.placeholder((8, 4096), name="A")
    def step(X, i: int):  # noqa: ANN001, ANN202
        return mc.compute((8, 4096), lambda a, b: X[a, b] * 2.0 + 1.0, name=f"T{i}")
    C = A
    for i in range(60):   # a long program
        C = step(C, i)
    schedule = Workload(C).schedule()
    ctx = Context(schedule, mc.Target.host(), 1e-3, 2e-3)
    first, again = messages(ctx, 3), messages(ctx, 3)
    assert first == again                                  # no timestamps: a replay's hash can match
    user = first[1]["content"]
    assert "lines omitted" in user and len(user) < MAX_IR_CHARS + 8000
    assert "Propose 3 different" in user and "2.00x" in user
    assert f"{mc.Target.host().vector_lanes('float32')} float32 lanes" in user
    system = first[0]["content"]
    assert "split(loop, factor=None, nparts=None)" in system and "cache_write(tensor, at)" in system
    assert "never a reduction loop" in system


def test_a_server_that_is_not_openai_compatible_is_a_clear_error(server: ChatServer) -> None:
    server.default = "not_a_completion"
    with pytest.raises(LLMResponseError, match="did not answer with a chat completion"):
        LLMClient(base_url=server.url, api_key=KEY).complete([{"role": "user", "content": "hi"}])


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                        st.sampled_from(["op", "loop", "factor", "steps", "proposals", "order", "args", "x"]),
                        inner, max_size=4), max_leaves=20),
       st.sampled_from(["", "```json\n", "prose {"]))
def test_no_answer_can_make_parsing_raise(value: Any, prefix: str) -> None:
    schedule = _FUZZ_SCHEDULE
    for text in (prefix + json.dumps(value), prefix + repr(value), json.dumps(value)[:-1]):
        parsed = parse_response(text, schedule)
        for proposal in parsed.proposals:
            schedule.replay(proposal.steps)          # whatever survives is legal


_FUZZ_SCHEDULE = Workload(_matmul(8)).schedule()


def test_prices_are_known_only_where_they_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MINICOMPILER_LLM_PRICE", raising=False)
    assert price_for("gpt-4o-mini-2024-07-18", "https://api.openai.com/v1") == (0.15, 0.60)
    assert price_for("gpt-4o", "https://api.openai.com/v1") == (2.50, 10.00)
    assert price_for("gpt-4o-mini", "http://localhost:8000/v1") is None        # a local server
    assert price_for("llama3", "https://api.openai.com/v1") is None
    monkeypatch.setenv("MINICOMPILER_LLM_PRICE", "1,2")
    assert price_for("llama3", "http://localhost:8000/v1") == (1.0, 2.0)
    stats = LLMProposer(LLMClient(base_url="http://127.0.0.1:1/v1", api_key=KEY)).stats
    stats.usage.prompt_tokens, stats.usage.completion_tokens = 1_000_000, 500_000
    assert stats.cost_usd == pytest.approx(2.0) and "$2.0000" in stats.summary()


def test_redaction() -> None:
    assert redact(f"bad key {KEY}!", [KEY]) == "bad key ***!"
    assert "abcdefghij" not in redact("Incorrect API key provided: sk-proj-abcdefghijklmnop")
    assert repr(LLMClient(base_url="http://127.0.0.1:1/v1", api_key=KEY)).find(KEY) < 0
