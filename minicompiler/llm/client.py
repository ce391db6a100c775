"""A thin, careful client for any OpenAI-compatible chat-completions endpoint.

    client = LLMClient(base_url="http://localhost:11434/v1", model="qwen2.5-coder")   # Ollama
    completion = client.complete([{"role": "user", "content": "..."}])
    completion.text, completion.prompt_tokens, completion.latency_s

It wraps ``openai.OpenAI(..., max_retries=0)`` and does the rest itself, so the behaviour is
the same against OpenAI, vLLM, Ollama or a llama.cpp server:

- *retries* with exponential backoff and jitter on 429 (honouring ``Retry-After``), 5xx,
  timeouts and dropped connections — bounded by ``max_retries``;
- *caps* per tune: at most ``max_calls`` completions and ``max_tokens`` tokens; once reached,
  ``complete`` raises ``LLMCapReached`` without calling;
- *clear errors*: every failure is an ``LLMError`` subclass saying what to check (the URL,
  the key, the model), and ``fatal`` errors (refused key, unreachable server, wrong URL) are
  the ones a tune should stop asking about;
- *counting*: calls, HTTP requests, prompt / completion tokens (from ``usage``, estimated
  when a server omits it), latency;
- *the key stays secret*: it is only handed to the ``openai`` client; every message we
  build or re-raise is passed through ``redact`` first;
- *structured answers*: ``complete(messages, schema)`` asks the server to constrain its
  decoding to a JSON schema, in the first dialect it accepts (``DIALECTS``: OpenAI's
  ``json_schema``, llama.cpp's ``json_object`` + ``schema``, plain ``json_object``, plain
  text). A 400/422/500 that names the response format is a refusal of that dialect, not an
  outage: the next dialect is tried at once, and the one that works is remembered per
  endpoint and model for the rest of the process (``dialect_log`` says why each was refused);
- *no orphaned work*: on a loopback endpoint (a local server shares the CPU with the
  measurements) answers are streamed, and a request past its timeout is *cancelled* by
  closing the stream, which llama.cpp, vLLM and Ollama take as the end of the request,
  instead of being left generating while candidates are timed; and after each answer the
  client waits ``settle_s`` (0.5 s) for the server to go quiet before a kernel is timed;
- *context overflow* is an ``LLMContextError`` carrying the window size when the server
  names it, so the proposer can send a more compact prompt instead of failing every node.

Settings come from arguments, else the environment: ``OPENAI_BASE_URL``, ``OPENAI_API_KEY``
and ``MINICOMPILER_LLM_MODEL`` (default ``gpt-4o-mini``). A local server that needs no key
gets the placeholder ``"not-needed"``.
"""
from __future__ import annotations

import logging
import os
import random
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

DEFAULT_MODEL = "gpt-4o-mini"
OPENAI_URL = "https://api.openai.com/v1"
NO_KEY = "not-needed"   # what a local server without authentication is sent

log = logging.getLogger("minicompiler.llm")

# US dollars per 1M (prompt, completion) tokens on api.openai.com (list prices, early 2025).
# Longest prefix wins, so dated snapshots ("gpt-4o-mini-2024-07-18") find their family.
# Override per tune with ``price=(input, output)`` or $MINICOMPILER_LLM_PRICE="0.15,0.60".
PRICES_PER_1M: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "o4-mini": (1.10, 4.40),
    "o3-mini": (1.10, 4.40),
    "gpt-3.5-turbo": (0.50, 1.50),
}


# ----------------------------------------------------------------------------- errors
class LLMError(RuntimeError):
    """Anything that kept the LLM from answering. ``fatal``: asking again will not help."""

    fatal = False


class LLMAuthError(LLMError):
    """The endpoint refused the key (HTTP 401 / 403), or no key was given for a server that needs one."""

    fatal = True


class LLMUnreachable(LLMError):
    """No connection to the endpoint (wrong URL, server not running, DNS, TLS)."""

    fatal = True


class LLMTimeout(LLMError):
    """No answer within the timeout, every attempt."""


class LLMRateLimited(LLMError):
    """HTTP 429 on every attempt (or a quota that is used up, which is fatal)."""

    def __init__(self, message: str, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


class LLMServerError(LLMError):
    """HTTP 5xx on every attempt."""


class LLMResponseError(LLMError):
    """Any other refusal (400, 404, ...) or an answer that is not a chat completion."""

    def __init__(self, message: str, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


class LLMCapReached(LLMError):
    """This tune's cap on calls or tokens is used up."""

    fatal = True


class LLMContextError(LLMError):
    """The prompt does not fit the model's context window. ``context_tokens``: the window, when the
    server said it. Not fatal by itself: a more compact prompt may fit (the proposer decides)."""

    def __init__(self, message: str, fatal: bool = False, context_tokens: Optional[int] = None) -> None:
        super().__init__(message)
        self.fatal = fatal
        self.context_tokens = context_tokens


ERRORS: dict[str, type[LLMError]] = {cls.__name__: cls for cls in (
    LLMError, LLMAuthError, LLMUnreachable, LLMTimeout, LLMRateLimited, LLMServerError, LLMResponseError,
    LLMCapReached, LLMContextError)}


def make_error(name: str, message: str, fatal: bool = False, context_tokens: Optional[int] = None) -> LLMError:
    """Rebuild an error from its class name and message (how a replay re-raises a recorded failure)."""
    cls = ERRORS.get(name, LLMError)
    if cls is LLMContextError:
        return LLMContextError(message, fatal, context_tokens)
    if cls in (LLMRateLimited, LLMResponseError):
        return cls(message, fatal)  # type: ignore[call-arg]
    return cls(message)


# ----------------------------------------------------------------------------- server dialects
# How a JSON schema is asked for, most constraining first. "text" sends no response_format.
DIALECTS = ("json_schema", "json_object+schema", "json_object", "text")

# The dialect each (endpoint, model) accepted, learned once per process.
_LEARNED_DIALECTS: dict[tuple[str, str], str] = {}

# A refusal of the response format names it (llama-cpp-python: 500 "Input should be 'text' or
# 'json_object'"; vLLM / OpenAI: 400 "... response_format ..."; others: "json_schema ... not supported").
_FORMAT_REFUSAL = re.compile(r"response_format|json_schema|json_object|'text'|structured output|"
                             r"guided_(?:json|decoding)|grammar", re.IGNORECASE)

# A prompt too long for the window: llama-cpp-python "Requested tokens (2300) exceed context window of
# 2048"; llama.cpp "exceeds the available context size"; vLLM / OpenAI "maximum context length is 4096".
_CONTEXT_OVERFLOW = re.compile(r"context (?:window|length|size)|n_ctx|too many tokens|prompt is too long",
                               re.IGNORECASE)
_CONTEXT_SIZE = re.compile(r"(?:context window of|context length is|n_ctx\W{0,3}|context size\W{0,3}"
                           r"(?:of\s)?)\s*(\d{3,7})", re.IGNORECASE)


def response_format(dialect: str, schema: dict) -> Optional[dict[str, Any]]:
    """The ``response_format`` field asking for ``schema`` in ``dialect`` (None: plain text)."""
    if dialect == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": "schedule_proposals", "schema": schema,
                                                       "strict": False}}
    if dialect == "json_object+schema":
        return {"type": "json_object", "schema": schema}
    if dialect == "json_object":
        return {"type": "json_object"}
    return None


def is_loopback(url: str) -> bool:
    """Whether ``url`` points at this machine (a local server sharing the CPU with the measurements)."""
    host = re.sub(r"^[a-z]+://(?:[^/@]*@)?", "", url.lower()).split("/")[0]
    host = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return host in ("localhost", "[::1]", "::1", "0.0.0.0") or host.startswith("127.")


def _window_from_props(props: Any) -> Optional[int]:
    settings = props.get("default_generation_settings", {}) if isinstance(props, dict) else {}
    value = settings.get("n_ctx") if isinstance(settings, dict) else None
    return int(value) if isinstance(value, int) and value >= 256 else None


class _DeadlinePassed(Exception):
    """A streamed answer ran past the client's timeout (the stream is then closed: cancelled)."""


_KEY_LIKE = re.compile(r"\b(sk-[A-Za-z0-9_\-]{6})[A-Za-z0-9_\-*]{6,}")


def redact(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` with every secret (and anything shaped like an OpenAI key) replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4 and secret != NO_KEY:
            text = text.replace(secret, "***")
    return _KEY_LIKE.sub(r"\1***", text)


# ----------------------------------------------------------------------------- results
@dataclass
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    model: str = ""
    attempts: int = 1
    usage_estimated: bool = False    # the server sent no ``usage``: tokens are ~chars/4


@dataclass
class Usage:
    """What one tune has spent, and its caps."""

    calls: int = 0                   # completions answered
    failed_calls: int = 0            # complete() that ended in an LLMError (caps excluded)
    requests: int = 0                # HTTP requests, retries included
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0           # wall time inside complete(), backoff included
    usage_estimated: bool = False
    max_calls: Optional[int] = None
    max_tokens: Optional[int] = None

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def check_caps(self) -> None:
        if self.max_calls is not None and self.calls + self.failed_calls >= self.max_calls:
            raise LLMCapReached(f"the cap of {self.max_calls} LLM calls for this tune is reached")
        if self.max_tokens is not None and self.tokens >= self.max_tokens:
            raise LLMCapReached(f"the cap of {self.max_tokens} LLM tokens for this tune is reached "
                                f"({self.tokens} used)")

    def add(self, completion: Completion) -> None:
        self.calls += 1
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens
        self.latency_s += completion.latency_s
        self.usage_estimated |= completion.usage_estimated


def price_for(model: str, base_url: str, price: Optional[tuple[float, float]] = None) -> Optional[tuple[float, float]]:
    """$ per 1M (prompt, completion) tokens: the given price, $MINICOMPILER_LLM_PRICE, or the
    table for OpenAI's own endpoint; None ("unknown") for any other server."""
    if price is not None:
        return (float(price[0]), float(price[1]))
    env = os.environ.get("MINICOMPILER_LLM_PRICE", "")
    if env:
        try:
            a, b = (float(x) for x in env.split(","))
            return (a, b)
        except ValueError:
            raise ValueError(f"MINICOMPILER_LLM_PRICE is 'input,output' dollars per 1M tokens, got {env!r}") from None
    if "api.openai.com" not in base_url:
        return None
    matches = [name for name in PRICES_PER_1M if model.startswith(name)]
    return PRICES_PER_1M[max(matches, key=len)] if matches else None


# ----------------------------------------------------------------------------- the client
class LLMClient:
    """One endpoint, one model, one tune's worth of caps and counters (``usage``)."""

    def __init__(self, model: Optional[str] = None, base_url: Optional[str] = None,
                 api_key: Optional[str] = None, timeout_s: float = 60.0, max_retries: int = 3,
                 backoff_s: float = 1.0, max_backoff_s: float = 30.0, max_calls: Optional[int] = None,
                 max_tokens: Optional[int] = None, max_output_tokens: Optional[int] = 1024,
                 temperature: Optional[float] = 0.2, price: Optional[tuple[float, float]] = None,
                 sleep: Callable[[float], None] = time.sleep, structured: bool = True,
                 stream: Optional[bool] = None, context_tokens: Optional[int] = None,
                 settle_s: Optional[float] = None) -> None:
        self.model = model or os.environ.get("MINICOMPILER_LLM_MODEL") or DEFAULT_MODEL
        self._url = (base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL).rstrip("/")
        self.base_url = re.sub(r"//[^/@]*@", "//", self._url)   # for messages: no user:password@
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self._key_given = bool(key)
        self.__key = key or NO_KEY    # name-mangled, never printed: see __repr__
        if timeout_s <= 0:
            raise ValueError(f"the LLM timeout must be positive, got {timeout_s!r}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries!r}")
        self.timeout_s, self.max_retries = float(timeout_s), int(max_retries)
        self.backoff_s, self.max_backoff_s = float(backoff_s), float(max_backoff_s)
        self.max_output_tokens, self.temperature = max_output_tokens, temperature
        self.usage = Usage(max_calls=max_calls, max_tokens=max_tokens)
        self.price = price_for(self.model, self.base_url, price)
        self._sleep = sleep
        self._jitter = random.Random()          # private: never touches the search's randomness
        self._client: Any = None
        self._limit_param = "max_tokens"        # switched to max_completion_tokens if the server asks
        self._prompt_chars = 0
        self.structured = structured
        self.stream = is_loopback(self._url) if stream is None else bool(stream)
        # A local server's threads spin down for a moment after answering: a kernel timed at once ran
        # ~8 % slower than idle (median of 8 paired timings, spread +-15 %: suggestive only; DeepSeek MoE
        # 16x1024x512, Zen 3, SmolLM2 on llama-cpp-python), as fast after 0.5 s. The wait costs ~5 % of
        # a call; benchmarks/results/llm/README.md has what it did (and did not) change.
        self.settle_s = (0.5 if is_loopback(self._url) else 0.0) if settle_s is None else float(settle_s)
        if context_tokens is not None and context_tokens < 256:
            raise ValueError(f"the LLM context window is a number of tokens (>= 256), got {context_tokens!r}")
        self.context_tokens = context_tokens     # the model's window, if known (given, reported or learned)
        self._context_asked = False
        self.dialect_log: list[str] = []          # each refused dialect, and why
        self.last_dialect = "text"                # the dialect of the last answered request
        self.cancelled = 0                        # streamed requests closed at their deadline
        self._stream_usage = True                 # ask for usage in the stream's last chunk

    def __repr__(self) -> str:
        return f"LLMClient(model={self.model!r}, base_url={self.base_url!r})"

    @property
    def secrets(self) -> tuple[str, ...]:
        """What must never be written anywhere (for ``redact``)."""
        return (self.__key,) if self._key_given else ()

    def _openai(self) -> Any:
        if self._client is None:
            if not self._key_given and "api.openai.com" in self.base_url:
                raise LLMAuthError("no API key for api.openai.com: set OPENAI_API_KEY (or pass llm_api_key), "
                                   "or point --llm-base-url / OPENAI_BASE_URL at a local server")
            import openai
            self._client = openai.OpenAI(base_url=self._url, api_key=self.__key, timeout=self.timeout_s,
                                         max_retries=0)
        return self._client

    # -- one completion ------------------------------------------------------------------------
    def discover_context(self) -> Optional[int]:
        """The model's context window as the server reports it — vLLM: ``max_model_len`` in
        /v1/models; llama.cpp's llama-server: ``n_ctx`` in /props — asked once; None where the
        server does not say (llama-cpp-python, OpenAI), and the window is learned from the first
        overflow instead."""
        if self.context_tokens or self._context_asked or "api.openai.com" in self.base_url:
            return self.context_tokens
        self._context_asked = True
        import json
        import urllib.request
        headers = {"Authorization": f"Bearer {self.__key}"}
        root = re.sub(r"/v1$", "", self._url)
        for url, read in ((f"{self._url}/models", self._window_from_models), (f"{root}/props", _window_from_props)):
            try:
                with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=3.0) as answer:
                    window = read(json.loads(answer.read(1_000_000)))
            except Exception:  # noqa: BLE001 - no such route, not JSON, no server: the server does not say
                continue
            if window:
                self.context_tokens = window
                log.info("the server at %s reports a context window of %d tokens", self.base_url, window)
                break
        return self.context_tokens

    def _window_from_models(self, listing: Any) -> Optional[int]:
        models = listing.get("data", []) if isinstance(listing, dict) else []
        mine = [m for m in models if isinstance(m, dict) and m.get("id") == self.model] or \
            [m for m in models if isinstance(m, dict)][:1]
        value = mine[0].get("max_model_len") if mine else None
        return int(value) if isinstance(value, int) and value >= 256 else None

    @property
    def dialect(self) -> str:
        """The dialect this endpoint is asked in first (learned, or the most constraining)."""
        if not self.structured:
            return "text"
        return _LEARNED_DIALECTS.get((self.base_url, self.model), DIALECTS[0])

    def complete(self, messages: list[dict[str, str]], schema: Optional[dict] = None) -> Completion:
        """The model's answer to ``messages`` (constrained to ``schema`` where the server can);
        retries transient failures, raises LLMError."""
        self.usage.check_caps()
        start = time.perf_counter()
        try:
            client = self._openai()          # importing openai is not the endpoint's latency
            start = time.perf_counter()
            completion = self._complete(client, messages, schema)
        except LLMError as error:
            self.usage.failed_calls += 1
            self.usage.latency_s += time.perf_counter() - start
            error.args = (redact(str(error), self.secrets),)
            raise error from None
        completion.latency_s = time.perf_counter() - start
        self.usage.add(completion)
        if self.settle_s:
            self._sleep(self.settle_s)   # not latency: the server's, not the answer's
        return completion

    def _complete(self, client: Any, messages: list[dict[str, str]], schema: Optional[dict]) -> Completion:
        import openai
        self._prompt_chars = sum(len(str(m.get("content", ""))) for m in messages)
        attempt, switched = 0, False
        dialect = self.dialect if schema is not None else "text"
        while True:
            self.usage.requests += 1
            try:
                request = self._request(messages, schema, dialect)
                if self.stream:
                    completion = self._streamed(client, request, attempt + 1)
                else:
                    completion = self._completion(client.chat.completions.create(**request), attempt + 1)
                self.last_dialect = dialect
                if schema is not None and self.structured:
                    _LEARNED_DIALECTS[(self.base_url, self.model)] = dialect
                return completion
            except (openai.APITimeoutError, _DeadlinePassed):
                failure: LLMError = LLMTimeout(
                    f"the LLM at {self.base_url} gave no answer within {self.timeout_s:g} s "
                    f"({attempt + 1} attempt(s)); raise --llm-timeout or use a faster model")
                delay = self._backoff(attempt)
            except openai.APIConnectionError as error:
                failure = LLMUnreachable(
                    f"cannot reach the LLM endpoint {self.base_url} ({self._cause(error)}): is the server "
                    f"running, and is the base URL right (it usually ends in /v1)? "
                    f"Set --llm-base-url or OPENAI_BASE_URL")
                delay = self._backoff(attempt)
            except openai.APIStatusError as error:
                status = error.status_code
                detail = self._cause(error)
                if (status in (400, 415, 422, 500, 501) and dialect != "text"
                        and _FORMAT_REFUSAL.search(detail) and not _CONTEXT_OVERFLOW.search(detail)):
                    refused, dialect = dialect, DIALECTS[DIALECTS.index(dialect) + 1]
                    note = f"{self.base_url} refused response_format {refused!r} (HTTP {status}: {detail[:160]})"
                    self.dialect_log.append(note)
                    log.info("%s; asking in %r instead", note, dialect)
                    _LEARNED_DIALECTS[(self.base_url, self.model)] = dialect
                    continue          # a refusal of a dialect is not a retry: the next one goes at once
                if status in (400, 413, 422, 500) and _CONTEXT_OVERFLOW.search(detail):
                    size = _CONTEXT_SIZE.search(detail)
                    raise LLMContextError(
                        f"the prompt (~{self._prompt_chars // 3} tokens) does not fit the context window of "
                        f"{self.model!r} at {self.base_url} (HTTP {status}: {detail[:200]})",
                        context_tokens=int(size.group(1)) if size else None) from None
                if status in (401, 403):
                    raise LLMAuthError(
                        f"the LLM endpoint {self.base_url} refused the API key (HTTP {status}: {detail}); "
                        f"check OPENAI_API_KEY / llm_api_key") from None
                if status == 429:
                    if getattr(error, "code", None) == "insufficient_quota" or "quota" in detail.lower():
                        raise LLMRateLimited(f"the LLM account's quota is used up (HTTP 429: {detail})",
                                             fatal=True) from None
                    failure = LLMRateLimited(f"the LLM endpoint {self.base_url} kept rate-limiting "
                                             f"(HTTP 429, {attempt + 1} attempt(s)): {detail}")
                    delay = self._retry_after(error) or self._backoff(attempt)
                elif status >= 500:
                    failure = LLMServerError(f"the LLM endpoint {self.base_url} failed with HTTP {status} "
                                             f"({attempt + 1} attempt(s)): {detail}")
                    delay = self._backoff(attempt)
                elif status in (400, 422) and "stream_options" in detail and self._stream_usage:
                    self._stream_usage = False       # an older server: usage is estimated instead
                    continue
                elif status == 400 and "max_tokens" in detail and not switched:
                    self._limit_param, switched = "max_completion_tokens", True   # newer OpenAI models
                    continue
                elif status == 404:
                    raise LLMResponseError(
                        f"HTTP 404 from {self.base_url}: the base URL is wrong (it usually ends in /v1) or the "
                        f"server has no model {self.model!r} (set --llm-model or MINICOMPILER_LLM_MODEL): "
                        f"{detail}", fatal=True) from None
                else:
                    raise LLMResponseError(f"the LLM endpoint {self.base_url} refused the request "
                                           f"(HTTP {status}): {detail}") from None
            except LLMError:
                raise
            except Exception as error:  # noqa: BLE001 - whatever else a strange server makes the library raise
                raise LLMResponseError(f"unusable answer from the LLM endpoint {self.base_url} "
                                       f"({type(error).__name__}: {self._cause(error)})") from None
            if attempt >= self.max_retries:
                raise failure
            self.usage.retries += 1
            self._sleep(min(delay, self.max_backoff_s))
            attempt += 1

    def _request(self, messages: list[dict[str, str]], schema: Optional[dict] = None,
                 dialect: str = "text") -> dict[str, Any]:
        request: dict[str, Any] = {"model": self.model, "messages": messages}
        format_ = response_format(dialect, schema) if schema is not None else None
        if format_ is not None:
            request["response_format"] = format_
        limit = self.max_output_tokens
        if self.usage.max_tokens is not None:
            left = max(1, self.usage.max_tokens - self.usage.tokens)
            limit = min(limit, left) if limit else left
        if limit:
            request[self._limit_param] = int(limit)
        if self.temperature is not None:
            request["temperature"] = self.temperature
        return request

    def _completion(self, response: Any, attempts: int) -> Completion:
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list):
            raise LLMResponseError(f"the endpoint {self.base_url} did not answer with a chat completion "
                                   f"(no 'choices'); is it OpenAI-compatible?")
        message = getattr(choices[0], "message", None) if choices else None
        text = getattr(message, "content", None) or ""
        if not isinstance(text, str):
            text = str(text)
        usage = getattr(response, "usage", None)
        prompt = getattr(usage, "prompt_tokens", None)
        completion = getattr(usage, "completion_tokens", None)
        estimated = not isinstance(prompt, int) or not isinstance(completion, int)
        if estimated:   # some local servers omit usage: ~4 characters a token
            prompt, completion = self._prompt_chars // 4, len(text) // 4
        return Completion(text, int(prompt), int(completion), 0.0,
                          str(getattr(response, "model", "") or self.model), attempts, estimated)

    def _streamed(self, client: Any, request: dict[str, Any], attempts: int) -> Completion:
        """The answer read as a stream; past the deadline the stream is closed, which cancels the
        request on the server (it stops generating when its client goes away)."""
        deadline = time.perf_counter() + self.timeout_s
        if self._stream_usage:
            request = {**request, "stream_options": {"include_usage": True}}
        stream = client.chat.completions.create(**request, stream=True)
        parts: list[str] = []
        usage, model, chunks = None, "", 0
        try:
            for chunk in stream:
                chunks += isinstance(getattr(chunk, "choices", None), list)
                usage = getattr(chunk, "usage", None) or usage
                model = getattr(chunk, "model", None) or model
                for choice in getattr(chunk, "choices", None) or []:
                    delta = getattr(choice, "delta", None)
                    content = getattr(delta, "content", None)
                    if isinstance(content, str) and content:
                        parts.append(content)
                if time.perf_counter() > deadline:
                    self.cancelled += 1
                    raise _DeadlinePassed()
        finally:
            stream.close()
        if not chunks:
            raise LLMResponseError(f"the endpoint {self.base_url} did not answer with a chat completion "
                                   f"(no streamed chunks with 'choices'); is it OpenAI-compatible?")
        text = "".join(parts)
        prompt = getattr(usage, "prompt_tokens", None)
        completion = getattr(usage, "completion_tokens", None)
        estimated = not isinstance(prompt, int) or not isinstance(completion, int)
        if estimated:   # servers stream about a token a chunk
            prompt, completion = self._prompt_chars // 4, len(parts)
        return Completion(text, int(prompt), int(completion), 0.0, str(model or self.model), attempts, estimated)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: base·2^attempt, times 0.5–1."""
        return self.backoff_s * (2 ** attempt) * (0.5 + 0.5 * self._jitter.random())

    def _retry_after(self, error: Any) -> Optional[float]:
        try:
            value = error.response.headers.get("retry-after")
            return max(0.0, float(value)) if value is not None else None
        except (AttributeError, TypeError, ValueError):
            return None

    def _cause(self, error: BaseException) -> str:
        """A one-line, key-free description of an openai exception."""
        text = str(getattr(error, "message", "") or error)
        body = getattr(error, "body", None)
        if body is None and getattr(error, "response", None) is not None:
            try:      # a streamed request's error body is not read for the exception: read it here
                body = error.response.read().decode("utf-8", "replace")  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - a closed or odd response: the status alone must do
                body = None
        if body and str(body)[:200] not in text:
            text = f"{text}: {body}"
        cause = error.__cause__
        if cause is not None and str(cause) and str(cause) not in text:
            text = f"{text}: {cause}"
        return redact(" ".join(text.split())[:300], self.secrets)
