"""From the model's text to validated Steps — tolerant of form, strict about meaning.

1. ``extract_json``: find the JSON in the answer (inside a code fence, or the balanced
   ``{...}`` / ``[...]`` among prose) and, if ``json.loads`` refuses it, repair small slips
   with text transforms that know where strings are: trailing commas, single quotes,
   Python ``True/False/None``, ``//`` comments, an answer cut off before its closing brackets.
   Nothing is ever evaluated: the only interpreters are ``json.loads`` and, for a step
   written as a call (``split(loop='i', factor=32)``), ``ast.literal_eval`` of its arguments.
2. ``to_step``: a step dict becomes a ``Step`` only if its op is a known primitive, its
   arguments are that primitive's parameters and every value is an int, a string or a list of
   them (integral floats and digit strings become ints).
3. ``validate``: each proposal is replayed on the current schedule step by step — the legal
   action space is exactly what the transforms accept (``Schedule.apply``, the check
   ``search.space.Space`` uses too). A step
   that is refused is dropped with the compiler's reason, and the steps after it are kept if
   they still apply without it. Every step is kept in a ``StepNote`` beside its reasoning.
"""
from __future__ import annotations

import ast
import inspect
import json
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from minicompiler.schedule import PRIMITIVES, Schedule, ScheduleError, Step

MAX_TEXT = 200_000          # characters of an answer that are read
MAX_PROPOSALS = 8
MAX_STEPS = 16              # per proposal
INT_PARAMS = {"factor", "nparts", "outer_factor", "inner_factor", "dim"}
_OP_KEYS = ("op", "name", "transform", "transformation", "primitive", "type", "action")
_ARG_KEYS = ("args", "arguments", "params", "parameters", "kwargs")
_NOTE_KEYS = ("reasoning", "reason", "why", "rationale", "comment", "explanation")
_ALIASES = {("reorder", "loops"): "order", ("reorder", "new_order"): "order"}


class StepError(ValueError):
    """A step the model wrote that is not one of ours (the message says why)."""


# ----------------------------------------------------------------------------- 1. JSON
def _candidates(text: str) -> list[str]:
    """Pieces of ``text`` that may be the JSON answer, most likely first."""
    out = [m.group(1) for m in re.finditer(r"```[a-zA-Z]*\s*\n?(.*?)```", text, re.S)]
    fence_open = re.search(r"```[a-zA-Z]*\s*\n?(.*)$", text, re.S)   # a fence the answer never closed
    if fence_open and text.count("```") % 2 == 1:
        out.append(fence_open.group(1))
    out += _balanced(text)
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start >= 0:
        out.append(text[start:])   # an unbalanced tail: maybe cut off mid-answer
    # The answer object mentions "proposals" or "steps"; prefer those, then the longest.
    seen: set[str] = set()
    unique = [c.strip() for c in out if c.strip() and not (c.strip() in seen or seen.add(c.strip()))]  # type: ignore[func-returns-value]
    return sorted(unique, key=lambda c: ("proposals" not in c, "steps" not in c and '"op"' not in c, -len(c)))


def _balanced(text: str) -> list[str]:
    """Top-level balanced ``{...}`` and ``[...]`` spans of ``text``, string-aware."""
    spans, depth, start, quote, escape = [], 0, -1, "", False
    for i, ch in enumerate(text):
        if quote:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == quote:
                quote = ""
            continue
        if ch == '"' and depth > 0:
            quote = ch
        elif ch in "{[":
            if depth == 0:
                start = i
            depth += 1
        elif ch in "}]" and depth > 0:
            depth -= 1
            if depth == 0:
                spans.append(text[start: i + 1])
    return spans


def repair(text: str) -> str:
    """Small, safe slips fixed by one string-aware pass (never evaluates anything)."""
    out: list[str] = []
    stack: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "\"'":                                  # a string: re-emit it double-quoted
            j, buf = i + 1, []
            while j < n and text[j] != ch:
                if text[j] == "\\" and j + 1 < n:
                    nxt = text[j + 1]
                    buf.append("'" if nxt == "'" else "\\" + nxt)
                    j += 2
                    continue
                buf.append('\\"' if text[j] == '"' else "\\n" if text[j] == "\n" else text[j])
                j += 1
            out.append('"' + "".join(buf) + '"')
            i = j + 1
            continue
        if text.startswith("//", i) or ch == "#":         # a comment to the end of the line
            while i < n and text[i] != "\n":
                i += 1
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        word = re.match(r"[A-Za-z_]+", text[i:])
        if word:
            w = word.group(0)
            i += len(w)
            if re.match(r"\s*:", text[i:]):              # a bare key: {op: "split"}
                out.append(f'"{w}"')
            else:
                out.append({"True": "true", "False": "false", "None": "null"}.get(w, w))
            continue
        if ch in "}]":
            while out and out[-1].strip() == "":
                out.pop()
            if out and out[-1] == ",":                   # trailing comma
                out.pop()
            if stack:
                stack.pop()
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        out.append(ch)
        i += 1
    result = "".join(out).rstrip().rstrip(",")
    return result + "".join(reversed(stack))            # an answer cut off: close what is open


def extract_json(text: str) -> tuple[Any, str]:
    """The JSON value in ``text`` and how it was found (``""`` if found as is); (None, why) if none."""
    text = (text or "")[:MAX_TEXT]
    if not text.strip():
        return None, "the answer was empty"
    for candidate in _candidates(text):
        for how, attempt in (("", candidate), ("repaired", None)):
            try:
                value = json.loads(attempt if attempt is not None else repair(candidate))
            except (ValueError, RecursionError):
                continue
            if isinstance(value, (dict, list)):
                return value, how
    return None, "no JSON object could be read from the answer"


# ----------------------------------------------------------------------------- 2. steps
def _params(op: str) -> list[str]:
    return [p for p in inspect.signature(PRIMITIVES[op]).parameters if p != "func"]


def _call_to_dict(text: str) -> dict[str, Any]:
    """``"split(loop='i', factor=32)"`` (or ``s.split(...)``) → a step dict; literals only."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise StepError(f"not a step: {text[:80]!r}") from None
    if not isinstance(node, ast.Call):
        raise StepError(f"not a step: {text[:80]!r}")
    func = node.func
    op = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    if op not in PRIMITIVES:
        raise StepError(f"unknown transformation {op!r}")
    try:
        positional = [ast.literal_eval(a) for a in node.args]
        keywords = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
    except (ValueError, TypeError, SyntaxError, RecursionError):
        raise StepError(f"{op}: arguments must be plain numbers, strings or lists") from None
    data: dict[str, Any] = {"op": op}
    if op == "reorder" and positional:
        data["order"] = positional[0] if len(positional) == 1 and isinstance(positional[0], list) else positional
    else:
        params = _params(op)
        if len(positional) > len(params):
            raise StepError(f"{op} takes at most {len(params)} arguments")
        data.update(zip(params, positional))
    data.update(keywords)
    return data


def _value(op: str, key: str, value: Any) -> Any:
    if isinstance(value, bool):
        raise StepError(f"{op}: {key} must be {'an int' if key in INT_PARAMS else 'a string'}, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if key in INT_PARAMS and isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        return int(value)
    if isinstance(value, (int, str)):
        return value
    if isinstance(value, list) and all(isinstance(v, (int, str)) and not isinstance(v, bool) for v in value):
        return value
    raise StepError(f"{op}: {key} must be an int, a string or a list of them, got {value!r}"[:200])


def to_step(raw: Any) -> tuple[Step, str]:
    """One step the model wrote → (Step, its reasoning); StepError says why it is not one."""
    if isinstance(raw, str):
        raw = _call_to_dict(raw)
    if not isinstance(raw, dict):
        raise StepError(f"a step is a JSON object with an 'op', got {json.dumps(raw)[:80]}")
    data = dict(raw)
    op = next((data.pop(k) for k in _OP_KEYS if isinstance(data.get(k), str) and data.get(k) in PRIMITIVES), None)
    if op is None:
        named = next((data.get(k) for k in _OP_KEYS if isinstance(data.get(k), str)), None)
        raise StepError(f"unknown transformation {named!r}; known: {', '.join(PRIMITIVES)}" if named
                        else "a step needs an 'op' naming the transformation")
    for key in _ARG_KEYS:
        if isinstance(data.get(key), dict):
            data.update(data.pop(key))
    reasoning = next((str(data.pop(k)) for k in _NOTE_KEYS if k in data), "")
    for k in _NOTE_KEYS + _OP_KEYS:
        data.pop(k, None)
    params = _params(op)
    args: dict[str, Any] = {}
    for key, value in data.items():
        key = _ALIASES.get((op, key), key)
        if value is None:
            continue      # "factor": null means "not given"
        if key not in params:
            raise StepError(f"{op} takes {', '.join(params)}; not {key!r}")
        args[key] = _value(op, key, value)
    try:
        return Step.make(op, **args), reasoning[:1000]
    except TypeError as error:
        raise StepError(f"{op}: {error}") from None


# ----------------------------------------------------------------------------- 3. validation
@dataclass
class StepNote:
    """One step the model proposed, what became of it, and the model's reason for it."""

    raw: Any                      # as the model wrote it (JSON-able)
    step: Optional[Step]          # None when it was not even a step
    kept: bool
    reason: str = ""              # why it was dropped
    reasoning: str = ""           # the model's reasoning for this step, if it gave one

    def describe(self) -> str:
        what = str(self.step) if self.step is not None else json.dumps(self.raw)[:120]
        return what + (f"  # {self.reasoning}" if self.reasoning else "")


@dataclass
class ParsedProposal:
    reasoning: str
    notes: list[StepNote] = field(default_factory=list)

    @property
    def steps(self) -> tuple[Step, ...]:
        return tuple(n.step for n in self.notes if n.kept and n.step is not None)

    @property
    def dropped(self) -> list[StepNote]:
        return [n for n in self.notes if not n.kept]


@dataclass
class Parsed:
    """Everything read from one answer."""

    reasoning: str                     # the answer's overall reasoning (or the prose around the JSON)
    proposals: list[ParsedProposal]
    error: str = ""                    # why nothing could be read, if so
    repaired: bool = False


def _raw_proposals(value: Any) -> tuple[str, list[tuple[str, list[Any]]]]:
    """(overall reasoning, [(proposal reasoning, raw steps)]) from the shapes models actually write."""
    reasoning = ""
    if isinstance(value, dict):
        reasoning = next((str(value[k]) for k in _NOTE_KEYS if k in value), "")
        if "proposals" in value:
            value = value["proposals"]
        elif "steps" in value:
            value = [value]
        elif any(k in value for k in _OP_KEYS):
            value = [[value]]
        else:
            return reasoning, []
    if not isinstance(value, list):
        return reasoning, []
    if value and all(isinstance(v, str) or (isinstance(v, dict) and "steps" not in v) for v in value):
        value = [value]    # a bare list of steps: one proposal
    out = []
    for item in value[:MAX_PROPOSALS]:
        if isinstance(item, dict):
            steps = item.get("steps", [])
            why = next((str(item[k]) for k in _NOTE_KEYS if k in item), "")
            out.append((why, steps if isinstance(steps, list) else [steps]))
        elif isinstance(item, list):
            out.append(("", item))
        else:
            out.append(("", [item]))
    return reasoning, out


def validate(schedule: Schedule, reasoning: str, raw_steps: list[Any]) -> ParsedProposal:
    """Replay the steps on ``schedule``: keep what applies, drop the rest with the reason."""
    proposal = ParsedProposal(reasoning[:2000])
    current = schedule
    for raw in raw_steps[:MAX_STEPS]:
        try:
            step, why = to_step(raw)
        except StepError as error:
            proposal.notes.append(StepNote(_jsonable(raw), None, False, str(error)))
            continue
        try:
            current = current.apply(step)
        except ScheduleError as error:
            proposal.notes.append(StepNote(step.to_json(), step, False, str(error), why))
            continue
        except Exception as error:  # noqa: BLE001 - a model's step must never take the tune down
            proposal.notes.append(StepNote(step.to_json(), step, False, f"{type(error).__name__}: {error}", why))
            continue
        proposal.notes.append(StepNote(step.to_json(), step, True, "", why))
    if len(raw_steps) > MAX_STEPS:
        proposal.notes.append(StepNote(f"{len(raw_steps) - MAX_STEPS} more steps", None, False,
                                       f"a proposal has at most {MAX_STEPS} steps"))
    return proposal


def _jsonable(raw: Any) -> Any:
    try:
        json.dumps(raw)
        return raw
    except (TypeError, ValueError):
        return repr(raw)[:200]


def parse_response(text: str, schedule: Schedule) -> Parsed:
    """Read the model's answer and validate each proposal against ``schedule``."""
    value, how = extract_json(text)
    prose = (text or "").split("```")[0].split("{")[0].strip()[:2000]
    if value is None:
        return Parsed(prose, [], error=how)
    reasoning, raws = _raw_proposals(value)
    proposals = [validate(schedule, why, steps) for why, steps in raws]
    if not raws:
        return Parsed(reasoning or prose, [], error="the JSON holds no proposals", repaired=bool(how))
    return Parsed(reasoning or prose, proposals, repaired=bool(how))
