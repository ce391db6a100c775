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
  build or re-raise is passed through ``redact`` first.

Settings come from arguments, else the environment: ``OPENAI_BASE_URL``, ``OPENAI_API_KEY``
and ``MINICOMPILER_LLM_MODEL`` (default ``gpt-4o-mini``). A local server that needs no key
gets the placeholder ``"not-needed"``.
"""
from __future__ import annotations

import os
import random
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

DEFAULT_MODEL = "gpt-4o-mini"
OPENAI_URL = "https://api.openai.com/v1"
NO_KEY = "not-needed"   # what a local server without authentication is sent

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


ERRORS: dict[str, type[LLMError]] = {cls.__name__: cls for cls in (
    LLMError, LLMAuthError, LLMUnreachable, LLMTimeout, LLMRateLimited, LLMServerError, LLMResponseError,
    LLMCapReached)}


def make_error(name: str, message: str, fatal: bool = False) -> LLMError:
    """Rebuild an error from its class name and message (how a replay re-raises a recorded failure)."""
    cls = ERRORS.get(name, LLMError)
    if cls in (LLMRateLimited, LLMResponseError):
        return cls(message, fatal)  # type: ignore[call-arg]
    return cls(message)


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
                 max_tokens: Optional[int] = None, max_output_tokens: Optional[int] = 2048,
                 temperature: Optional[float] = None, price: Optional[tuple[float, float]] = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
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
    def complete(self, messages: list[dict[str, str]]) -> Completion:
        """The model's answer to ``messages``; retries transient failures, raises LLMError."""
        self.usage.check_caps()
        start = time.perf_counter()
        try:
            client = self._openai()          # importing openai is not the endpoint's latency
            start = time.perf_counter()
            completion = self._complete(client, messages)
        except LLMError as error:
            self.usage.failed_calls += 1
            self.usage.latency_s += time.perf_counter() - start
            error.args = (redact(str(error), self.secrets),)
            raise error from None
        completion.latency_s = time.perf_counter() - start
        self.usage.add(completion)
        return completion

    def _complete(self, client: Any, messages: list[dict[str, str]]) -> Completion:
        import openai
        self._prompt_chars = sum(len(str(m.get("content", ""))) for m in messages)
        attempt, switched = 0, False
        while True:
            self.usage.requests += 1
            try:
                response = client.chat.completions.create(**self._request(messages))
                return self._completion(response, attempt + 1)
            except openai.APITimeoutError:
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

    def _request(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        request: dict[str, Any] = {"model": self.model, "messages": messages}
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
        cause = error.__cause__
        if cause is not None and str(cause) and str(cause) not in text:
            text = f"{text}: {cause}"
        return redact(" ".join(text.split())[:300], self.secrets)
