"""From the model's text to validated Steps — tolerant of form, strict about meaning.

1. ``extract_json``: find the JSON in the answer (inside a code fence, or the balanced
   ``{...}`` / ``[...]`` among prose) and, if ``json.loads`` refuses it, repair small slips
   with text transforms that know where strings are: trailing commas, single quotes,
   Python ``True/False/None``, ``//`` comments, an answer cut off before its closing brackets.
   Nothing is ever evaluated: the only interpreters are ``json.loads`` and, for a step
   written as a call (``split(loop='i', factor=32)``), ``ast.literal_eval`` of its arguments.
   Reading is linear in the answer and its Python work is bounded whatever the answer: only
   the first ``MAX_TEXT`` characters are read; the scan for JSON and the repair are each one
   forward pass in which regular expressions skip what cannot matter (prose, strings, clean
   JSON) and Python sees only brackets and tokens; past ``MAX_BRACKETS`` brackets or
   ``MAX_TOKENS`` repaired tokens the answer is read as if it were cut off there; JSON nested
   deeper than ``MAX_DEPTH`` is not read; at most ``MAX_CANDIDATES`` pieces are tried with
   ``json.loads`` and ``MAX_REPAIRS`` of them repaired. A piece that holds no step (``{}``,
   ``[1, 2]``) is returned only if no later piece does.
2. ``to_step``: a step dict becomes a ``Step`` only if its op is a known primitive, its
   arguments are that primitive's parameters and every value is of its parameter's kind:
   an integer (``INT_PARAMS``; integral floats and digit strings become ints; bools, other
   floats, lists and ints beyond ``MAX_INT`` are refused), a list of loop names
   (``LIST_PARAMS``; a string is not a list) or a name (a string).
3. ``validate``: each proposal is replayed on the current schedule step by step — the legal
   action space is exactly what the transforms accept (``Schedule.apply``, the check
   ``search.space.Space`` uses too). A step
   that is refused is dropped with the compiler's reason, and the steps after it are kept if
   they still apply without it. Every step is kept in a ``StepNote`` beside its reasoning.

Errors: ``extract_json`` and ``parse_response`` never raise for any string (or None): what
cannot be read is reported in the result. ``to_step`` raises only ``StepError``. ``repair``
never raises for a string.
"""
from __future__ import annotations

import ast
import json
import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Optional

from minicompiler.schedule import PRIMITIVES, Schedule, ScheduleError, Step
from minicompiler.schedule.params import COUNT, INDEX, LOOPS, MAX_COUNT, params_of_kind
from minicompiler.search.legality import report_defect

# The head of an answer that is read. A default answer (2048 output tokens) is ~8 KB, but a model
# that thinks aloud before its JSON (max_output_tokens=None, a local reasoning model) can write
# tens of KB first, so the cap is generous: it bounds only C-speed work (regex scans, json.loads),
# since the Python work of reading is bounded by the MAX_* budgets below, whatever the length.
MAX_TEXT = 200_000          # characters of an answer that are read
MAX_PROPOSALS = 8
MAX_STEPS = 16              # per proposal
MAX_DEPTH = 32              # nesting of the JSON read (an answer is 5 deep, a step's order list 6)
MAX_BRACKETS = 10_000       # brackets read by the scan, and by one repair (8 proposals of 16 steps: ~600)
MAX_TOKENS = 30_000         # tokens repaired in all, per answer (8 proposals of 16 steps: ~3 000)
MAX_SPANS = 1_000           # top-level {...} / [...] spans among the prose that are considered
MAX_FENCES = 32             # code fences that are considered
MAX_CANDIDATES = 16         # pieces json.loads is tried on
MAX_REPAIRS = 3             # of which at most this many are repaired
MAX_CALL = 2_000            # characters of a step written as a call
MAX_NAME = 200              # characters of a loop or tensor name
MAX_NAMES = 64              # names in a list of loop names
MAX_INT = MAX_COUNT         # the largest integer argument (the schedule's own bound on counts)
# From the primitives' declarations: integers, lists of loop names; every other parameter is one name.
INT_PARAMS = params_of_kind(COUNT, INDEX)
LIST_PARAMS = params_of_kind(LOOPS)
_OP_KEYS = ("op", "name", "transform", "transformation", "primitive", "type", "action")
_ARG_KEYS = ("args", "arguments", "params", "parameters", "kwargs")
_NOTE_KEYS = ("reasoning", "reason", "why", "rationale", "comment", "explanation")
_ALIASES = {("reorder", "loops"): "order", ("reorder", "new_order"): "order"}


class StepError(ValueError):
    """A step the model wrote that is not one of ours (the message says why)."""


# ----------------------------------------------------------------------------- 1. JSON
# Outside brackets only brackets matter; empty or flat ones without a quote, a colon or a call
# (``A[i]``, ``{x, y}``, ``[0, 1)``...) cannot be an answer and are skipped inside the regex.
# Nothing follows the star, so it never backtracks: one C-speed pass up to the next real opener.
_PROSE = re.compile(r"""(?:[^{\[]+|\{[^{}\[\]"':]*\}|\[[^{}\[\]"'(]*\])*""")
# Inside brackets: everything but brackets and double-quoted strings; it stops at a bracket or at
# a string never closed. (Single quotes and comments are left to ``repair``: an apostrophe or a
# ``#``/``//`` in prose between brackets must not hide the brackets that follow.)
_INSIDE = re.compile(r"""(?:[^"{}\[\]]+|"[^"\\]*(?:\\.[^"\\]*)*")*""", re.S)
_LANG = re.compile(r"[A-Za-z]*")   # the language tag after an opening fence


def _scan(text: str) -> tuple[list[tuple[int, int]], Optional[tuple[int, int]]]:
    """Top-level balanced ``{...}``/``[...]`` spans of ``text`` (aware of strings inside them),
    and the open span the text ends in, if any (an answer cut off), as ``(start, end)`` pairs.

    One forward pass: the regexes skip prose and everything inside brackets but brackets, so
    Python handles each bracket once. A span nested deeper than ``MAX_DEPTH`` is no candidate.
    Past ``MAX_BRACKETS`` brackets or ``MAX_SPANS`` spans the scan stops, what is open then
    being read as if the answer were cut off at that point.
    """
    spans: list[tuple[int, int]] = []
    n, pos, brackets = len(text), 0, 0
    while len(spans) < MAX_SPANS:
        pos = _PROSE.match(text, pos).end()
        if pos >= n:
            return spans, None
        start, depth, pos = pos, 1, pos + 1          # text[start] opens a span
        deep = False                                   # nested beyond any answer: no candidate
        while depth:
            pos = _INSIDE.match(text, pos).end()
            if pos >= n:
                return spans, None if deep else (start, n)
            ch = text[pos]
            brackets += 1
            if brackets > MAX_BRACKETS:
                return spans, None if deep else (start, pos)
            if ch in "{[":
                depth += 1
                deep = deep or depth > MAX_DEPTH
            elif ch in "}]":
                depth -= 1
            else:                                       # a string never closed: the rest is in it
                return spans, None if deep else (start, n)
            pos += 1
        if not deep:
            spans.append((start, pos))
    return spans, None


def _fences(text: str) -> list[str]:
    """The contents of the first ``MAX_FENCES`` code fences, in order; an unclosed last fence runs to the
    end (only when all fences were read: ``2 * MAX_FENCES`` marks are an even number)."""
    marks: list[int] = []
    at = text.find("```")
    while at >= 0 and len(marks) < 2 * MAX_FENCES:
        marks.append(at)
        at = text.find("```", at + 3)
    out = []
    for k in range(0, len(marks), 2):
        begin = _LANG.match(text, marks[k] + 3).end()
        out.append(text[begin: marks[k + 1]] if k + 1 < len(marks) else text[begin:])
    return out


def _candidates(text: str) -> list[tuple[str, bool]]:
    """Pieces of ``text`` that may be the JSON answer, most likely first (at most ``MAX_CANDIDATES``),
    each with whether its nesting is known to be within ``MAX_DEPTH`` (true of what ``_scan`` found)."""
    spans, open_span = _scan(text)
    out = [(piece, False) for piece in _fences(text)] + [(text[a:b], True) for a, b in spans]
    if open_span is not None:                     # an unbalanced tail: maybe cut off mid-answer,
        start, end = open_span                    # then ended by the fence it was written in
        fence = text.find("```", start, end)
        out.append((text[start: end if fence < 0 else fence], True))
    # The answer object mentions "proposals" or "steps"; prefer those, then the longest.
    unique: dict[str, bool] = {}
    for piece, checked in out:
        piece = piece.strip()
        if piece:
            unique[piece] = unique.get(piece, False) or checked
    ranked = sorted(unique, key=lambda c: ("proposals" not in c, "steps" not in c and '"op"' not in c, -len(c)))
    return [(piece, unique[piece]) for piece in ranked[:MAX_CANDIDATES]]


# One repair token each; ``run`` is everything that is copied as it is (clean double-quoted
# strings and words that are neither keys nor Python's True/False/None included), so a clean
# stretch of JSON is one token. Each alternative is decided by its first character.
_TOKEN = re.compile(r"""
    (?P<run>(?:[^"'/\#A-Za-z_{}\[\],]
              |"[^"\\\x00-\x1f]*(?:\\[^'\x00-\x1f][^"\\\x00-\x1f]*)*"
              |(?!(?:True|False|None)(?![A-Za-z0-9_]))[A-Za-z_][A-Za-z0-9_]*(?![A-Za-z0-9_]|\s*:)
              |/(?![/*]))+)
  | (?P<dq>"[^"\\]*(?:\\.[^"\\]*)*(?P<dqend>")?)
  | (?P<sq>'[^'\\]*(?:\\.[^'\\]*)*(?P<sqend>')?)
  | (?P<comment>//[^\n]*|\#[^\n]*|/\*.*?(?:\*/|\Z))
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<open>[{\[])
  | (?P<close>[}\]])
  | (?P<comma>,)
""", re.S | re.X)
_KEY_AFTER = re.compile(r"\s*:")
_ESCAPE = re.compile(r"""\\(.)|(")""", re.S)
_CONTROL = re.compile(r"[\x00-\x1f]")
_CONTROL_ESCAPES = {c: json.dumps(chr(c))[1:-1] for c in range(32)}
_WORDS = {"True": "true", "False": "false", "None": "null"}


def _fix_escape(m: re.Match) -> str:
    ch = m.group(1)
    if ch is None:                                       # a " inside a single-quoted string
        return '\\"'
    if ch == "'":                                        # \' is just a quote in JSON
        return "'"
    return m.group(0) if ch in '"\\/bfnrtu' else "\\\\" + ch   # \d stays a backslash and a d


def _fix_string(body: str) -> str:
    """A string's body (either quote) as the body of a JSON double-quoted string: C-speed passes,
    a Python call only per backslash."""
    body = _ESCAPE.sub(_fix_escape, body) if "\\" in body else body.replace('"', '\\"')
    return body.translate(_CONTROL_ESCAPES) if _CONTROL.search(body) else body   # raw newlines...


def _repairs(text: str, max_depth: Optional[int] = None, max_tokens: Optional[int] = None) -> tuple[list[str], int]:
    """``text`` with small slips fixed, then, for an answer cut off, the same cut back to its last
    complete element (tried if the first is not JSON), and the number of tokens read. One pass
    over ``_TOKEN``s; no text (``[]``) if nested deeper than ``max_depth``. Past ``max_tokens``
    tokens or ``MAX_BRACKETS`` brackets the text is read as if cut off there."""
    out: list[str] = []
    append = out.append
    stack: list[str] = []
    safe = 0                     # len(out) at the end of the last complete element
    brackets = 0
    deepest = MAX_BRACKETS if max_depth is None else max_depth
    budget = len(text) if max_tokens is None else max_tokens
    tokens = 0
    for m in _TOKEN.finditer(text):
        tokens += 1
        kind = m.lastgroup
        if kind == "run":
            append(m.group())
            continue
        if tokens > budget:
            break
        if kind == "comma":
            safe = len(out)
            append(",")
        elif kind == "close":
            brackets += 1
            if brackets > MAX_BRACKETS:
                break
            while out and out[-1].strip() == "":
                out.pop()
            if out and out[-1] == ",":                   # trailing comma
                out.pop()
            if stack:
                stack.pop()
            append(m.group())
            safe = len(out)
        elif kind == "open":
            brackets += 1
            if brackets > MAX_BRACKETS:
                break
            stack.append("}" if m.group() == "{" else "]")
            if len(stack) > deepest:
                return [], tokens
            append(m.group())
            safe = len(out)
        elif kind == "dq" or kind == "sq":               # a string: re-emit it double-quoted, closed
            body = m.group()[1: -1 if m.group(kind + "end") is not None else None]
            if "\\" in body:
                tokens += body.count("\\")             # each escape is a step of the repair
                if tokens > budget:
                    break
            append('"' + _fix_string(body) + '"')
        elif kind == "word":
            w = m.group()
            if _KEY_AFTER.match(text, m.end()):          # a bare key: {op: "split"}
                append(f'"{w}"')
            else:
                append(_WORDS.get(w, w))
        # else a comment: dropped
    closers = "".join(reversed(stack))
    result = "".join(out).rstrip().rstrip(",") + closers     # cut off: close what is open
    if not stack:
        return [result], tokens
    cut = "".join(out[:safe]).rstrip().rstrip(",") + closers  # no bracket after `safe`: same closers
    return ([result] if cut == result else [result, cut]), tokens


def repair(text: str) -> str:
    """Small, safe slips fixed by one string-aware pass (never evaluates anything)."""
    return _repairs(text)[0][0]


def _json_int(digits: str) -> Any:
    """An integer of the answer; one too long to be any argument stays its digits (refused later)."""
    return int(digits) if len(digits) <= 40 else digits


def _loads(text: str) -> Any:
    try:
        return json.loads(text, parse_int=_json_int)
    except (ValueError, RecursionError):
        return None


def _too_deep(value: Any) -> bool:
    """Nested deeper than ``MAX_DEPTH`` (checked without recursion)."""
    todo = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                return True
            todo.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return False


def _read(text: Any) -> str:
    """What is read of an answer: its first ``MAX_TEXT`` characters, before any other work."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text[:4 * MAX_TEXT]).decode("utf-8", "replace")
    elif not isinstance(text, str):
        text = "" if text is None else str(text)
    return text[:MAX_TEXT]


def extract_json(text: Optional[str]) -> tuple[Any, str]:
    """The JSON value in ``text`` and how it was found (``""`` if found as is); (None, why) if none."""
    text = _read(text)
    if not text.strip():
        return None, "the answer was empty"
    repairs, budget = 0, MAX_TOKENS
    stepless: Optional[tuple[Any, str]] = None        # the first JSON read that holds no step
    for candidate, checked in _candidates(text):
        found = []
        value = _loads(candidate)
        if isinstance(value, (dict, list)) and (checked or not _too_deep(value)):
            found.append((value, ""))
        elif repairs < MAX_REPAIRS and budget > 0:
            repairs += 1
            attempts, used = _repairs(candidate, MAX_DEPTH, budget)   # no deeper than MAX_DEPTH
            budget -= used
            repaired = next((v for v in map(_loads, attempts) if isinstance(v, (dict, list))), None)
            if repaired is not None:
                found.append((repaired, "repaired"))
        for value, how in found:
            if _has_steps(value):
                return value, how
            stepless = stepless or (value, how)     # "{}" or "[1, 2]": kept only if nothing better comes
    return stepless or (None, "no JSON object could be read from the answer")


_CALL_SHAPE = re.compile(r"\s*[A-Za-z_][\w.]*\s*\(")


def _step_like(raw: Any) -> bool:
    """A step is an object, or a string written as a call (``split(loop='i', factor=4)``); bare
    numbers, prose and nested lists found where steps go are not steps, and are not counted."""
    return isinstance(raw, dict) or (isinstance(raw, str) and _CALL_SHAPE.match(raw) is not None)


def _has_steps(value: Any) -> bool:
    """Whether ``value`` holds something that may be a step (an object or a call), where steps go."""
    return any(_step_like(raw) for _, raws in _raw_proposals(value)[1] for raw in raws)


# ----------------------------------------------------------------------------- 2. steps
def _params(op: str) -> list[str]:
    return list(PRIMITIVES[op].params)


def _show(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for any value (a huge int has no repr)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"   # str() may refuse it
    if isinstance(value, str) and len(value) > limit:
        value = value[:limit]
    try:
        text = repr(value)
    except (ValueError, RecursionError):
        return f"a {type(value).__name__}"
    return text if len(text) <= limit else text[:limit] + "..."


def _call_to_dict(text: str) -> dict[str, Any]:
    """``"split(loop='i', factor=32)"`` (or ``s.split(...)``) → a step dict; literals only."""
    if len(text) > MAX_CALL:
        raise StepError(f"not a step (a call of {len(text)} characters): {text[:80]!r}")
    try:
        with warnings.catch_warnings():                  # SyntaxWarning on odd escapes: not ours to show
            warnings.simplefilter("ignore")
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
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        raise StepError(f"{op}: arguments must be plain numbers, strings or lists") from None
    data: dict[str, Any] = {"op": op}
    if op == "reorder" and positional:
        data["order"] = positional[0] if len(positional) == 1 and isinstance(positional[0], (list, tuple)) \
            else positional
    else:
        params = _params(op)
        if len(positional) > len(params):
            raise StepError(f"{op} takes at most {len(params)} arguments")
        data.update(zip(params, positional))
    data.update(keywords)
    return data


_DIGITS = re.compile(r"\s*[+-]?[0-9]{1,19}\s*")


def _int(op: str, key: str, value: Any) -> int:
    """An integer argument: an int, an integral float or a string of digits, within ``MAX_INT``."""
    number: Any = value
    if isinstance(value, bool):                          # True is an int to Python, not to us
        number = None
    elif isinstance(value, float):                       # 4.0 is 4; 2.5, inf and nan are no count
        number = int(value) if math.isfinite(value) and value.is_integer() else None
    elif isinstance(value, str):
        number = int(value) if _DIGITS.fullmatch(value) else \
            MAX_INT + 1 if re.fullmatch(r"\s*[+-]?[0-9]+\s*", value) else None
    if not isinstance(number, int):
        raise StepError(f"{op}: {key} must be an integer, got {_show(value)}")
    if abs(number) > MAX_INT:
        raise StepError(f"{op}: {key} must be an integer of at most 2**62, got {_show(value)}")
    return number


def _name(op: str, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise StepError(f"{op}: {key} must be a name (a string), got {_show(value)}")
    if len(value) > MAX_NAME:
        raise StepError(f"{op}: {key} must be a name of at most {MAX_NAME} characters, got {_show(value)}")
    return value


def _names(op: str, key: str, value: Any) -> list[str]:
    if not isinstance(value, (list, tuple)):             # "ji" is not ["j", "i"]
        raise StepError(f"{op}: {key} must be a list of loop names, got {_show(value)}")
    if len(value) > MAX_NAMES:
        raise StepError(f"{op}: {key} must be a list of at most {MAX_NAMES} loop names, got {len(value)}")
    if not all(isinstance(v, str) for v in value):
        raise StepError(f"{op}: {key} must be a list of loop names (strings), got {_show(value)}")
    return [_name(op, key, v) for v in value]


def _value(op: str, key: str, value: Any) -> Any:
    """``value`` as an argument of ``key``'s kind, or StepError."""
    if key in INT_PARAMS:
        return _int(op, key, value)
    if key in LIST_PARAMS:
        return _names(op, key, value)
    return _name(op, key, value)


def to_step(raw: Any) -> tuple[Step, str]:
    """One step the model wrote → (Step, its reasoning); StepError says why it is not one."""
    if isinstance(raw, str):
        raw = _call_to_dict(raw)
    if not isinstance(raw, dict):
        raise StepError(f"a step is a JSON object with an 'op', got {_show(raw, 80)}")
    data = dict(raw)
    op = next((data.pop(k) for k in _OP_KEYS if isinstance(data.get(k), str) and data.get(k) in PRIMITIVES), None)
    if op is None:
        named = next((data.get(k) for k in _OP_KEYS if isinstance(data.get(k), str)), None)
        raise StepError(f"unknown transformation {_show(named)}; known: {', '.join(PRIMITIVES)}" if named
                        else "a step needs an 'op' naming the transformation")
    for key in _ARG_KEYS:
        if isinstance(data.get(key), dict):
            data.update(data.pop(key))
    reasoning = next((str(data.pop(k))[:1000] for k in _NOTE_KEYS if k in data), "")
    for k in _NOTE_KEYS + _OP_KEYS:
        data.pop(k, None)
    params = _params(op)
    args: dict[str, Any] = {}
    for key, value in data.items():
        key = _ALIASES.get((op, key), key)
        if value is None:
            continue      # "factor": null means "not given"
        if key not in params:
            raise StepError(f"{op} takes {', '.join(params)}; not {_show(key)}")
        args[key] = _value(op, key, value)
    try:
        return Step.make(op, **args), reasoning
    except (TypeError, ValueError) as error:
        raise StepError(f"{op}: {error}"[:200]) from None


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
    choice: tuple[int, ...] = ()       # the numbered candidates the model ranked, best first (unchecked range)


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
            steps = steps if isinstance(steps, list) else [steps]
        elif isinstance(item, list):
            why, steps = "", item
        else:
            why, steps = "", [item]
        steps = [raw for raw in steps if _step_like(raw)]
        if steps:
            out.append((why, steps))
    return reasoning, out


def _choice(value: Any) -> tuple[int, ...]:
    """The ranked candidate numbers of an answer's ``choice`` (ints, or digit strings; at most 16)."""
    raw = value.get("choice") if isinstance(value, dict) else None
    if isinstance(raw, (int, str)) and not isinstance(raw, bool):
        raw = [raw]
    if not isinstance(raw, list):
        return ()
    out = []
    for item in raw[:16]:
        if isinstance(item, str) and item.strip().isdigit() and len(item.strip()) < 6:
            item = int(item.strip())
        if isinstance(item, int) and not isinstance(item, bool) and 0 < item < 1000:
            out.append(item)
    return tuple(out)


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
        except Exception as error:  # noqa: BLE001 - a compiler bug: raised outside a tune, a counted defect in one
            report_defect(current, (step,), error)
            proposal.notes.append(StepNote(step.to_json(), step, False,
                                           f"internal compiler error: {type(error).__name__}: {error}", why))
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
    except (TypeError, ValueError, RecursionError):
        return _show(raw, 200)


def parse_response(text: str, schedule: Schedule) -> Parsed:
    """Read the model's answer and validate each proposal against ``schedule``."""
    text = _read(text)
    value, how = extract_json(text)
    ends = [i for i in (text.find("```"), text.find("{")) if i >= 0]
    prose = text[:min(ends, default=len(text))].strip()[:2000]   # the text before any fence or brace
    if value is None:
        return Parsed(prose, [], error=how)
    reasoning, raws = _raw_proposals(value)
    reasoning = reasoning[:2000]
    proposals = [validate(schedule, why, steps) for why, steps in raws]
    choice = _choice(value)
    if not raws and not choice:
        return Parsed(reasoning or prose, [], error="the JSON holds no proposals", repaired=bool(how))
    return Parsed(reasoning or prose, proposals, repaired=bool(how), choice=choice)
