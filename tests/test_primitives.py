"""Each primitive is declared once (minicompiler/schedule/params.py); everything else must agree with it.

The Schedule methods, the primitives' own signatures, the LLM prompt's vocabulary, the JSON
schema of an answer, the parser's tables and the evolutionary search's numeric decisions are
all checked against the declarations here, so a new or changed primitive cannot drift.
"""
from __future__ import annotations

import inspect

import numpy as np
import pytest

import minicompiler as mc
from minicompiler.schedule import PRIMITIVES, call_text
from minicompiler.schedule.params import COUNT, INDEX, LOOP, LOOPS, REGISTRY, TENSOR, count_params

KIND_TYPES = {LOOP: "string", TENSOR: "string", LOOPS: "array", COUNT: "integer", INDEX: "integer"}


def test_every_registered_primitive_is_offered_in_order() -> None:
    assert set(PRIMITIVES) == set(REGISTRY)
    assert list(PRIMITIVES)[:2] == ["split", "tile"]


@pytest.mark.parametrize("op", list(PRIMITIVES))
def test_the_function_signature_matches_the_declaration(op: str) -> None:
    primitive = PRIMITIVES[op]
    params = list(inspect.signature(primitive.function).parameters.values())[1:]   # after func
    assert [p.name for p in params] == list(primitive.params)
    for p in params:
        declared = primitive.params[p.name]
        assert (p.default is inspect.Parameter.empty) == declared.required, p.name
        assert declared.doc and declared.kind.meaning
    assert primitive.summary and primitive.legality, "the docstring needs a summary and 'Legal when:'"


@pytest.mark.parametrize("op", list(PRIMITIVES))
def test_the_schedule_method_matches_the_declaration(op: str) -> None:
    primitive = PRIMITIVES[op]
    method = inspect.signature(getattr(mc.Schedule, op))
    params = [p for p in method.parameters.values() if p.name != "self"]
    if any(param.kind is LOOPS for param in primitive.params.values()):
        # A list of loops is passed as positional arguments: s.reorder("j", "i").
        assert len(params) == 1 and params[0].kind is inspect.Parameter.VAR_POSITIONAL
        return
    assert [p.name for p in params] == list(primitive.params)
    for p in params:
        assert (p.default is inspect.Parameter.empty) == primitive.params[p.name].required, p.name


def test_a_parameter_name_means_one_kind_everywhere() -> None:
    kinds: dict[str, set] = {}
    for primitive in PRIMITIVES.values():
        for name, param in primitive.params.items():
            kinds.setdefault(name, set()).add(param.kind.name)
    assert all(len(k) == 1 for k in kinds.values()), kinds


def test_the_prompt_vocabulary_is_read_off_the_declarations() -> None:
    from minicompiler.llm.prompt import vocabulary
    text = vocabulary()
    for primitive in PRIMITIVES.values():
        assert primitive.signature() in text
        for name, param in primitive.params.items():
            assert f"{name} ({param.kind.short}" in text and param.doc in text


def test_the_answer_schema_is_read_off_the_declarations() -> None:
    from minicompiler.llm.prompt import answer_schema
    A, B = mc.placeholder((8, 4), name="A"), mc.placeholder((4, 16), name="B")
    k = mc.reduce_axis(4, "k")
    s = mc.Schedule(mc.compute((8, 16), lambda i, j: mc.sum(A[i, k] * B[k, j], axis=k), name="C"))
    for schedule in (None, s):
        schema = answer_schema(schedule)
        steps = schema["properties"]["proposals"]["items"]["properties"]["steps"]["items"]["oneOf"]
        assert [st["properties"]["op"]["const"] for st in steps] == list(PRIMITIVES)
        for st, primitive in zip(steps, PRIMITIVES.values()):
            assert set(st["properties"]) == {"op"} | set(primitive.params)
            assert st["required"] == ["op"] + [p for p, param in primitive.params.items() if param.required]
            assert st["additionalProperties"] is False
            for name, param in primitive.params.items():
                assert st["properties"][name]["type"] == KIND_TYPES[param.kind]
    loops = answer_schema(s)["properties"]["proposals"]["items"]["properties"]["steps"]["items"]["oneOf"][0]
    names = set(loops["properties"]["loop"]["enum"])      # the loops, and those splitting them twice makes
    assert set(s.loops) <= names and {"i_o", "j_i", "k_o_i", "i_init_i_o"} <= names
    assert all(n in s.loops or n[:-2] in names and n[-2:] in ("_o", "_i") for n in names)


def test_the_parser_and_the_search_read_their_tables_off_the_declarations() -> None:
    from minicompiler.llm.parse import INT_PARAMS, LIST_PARAMS
    from minicompiler.search.evolutionary import _FACTOR_ARGS
    counts = {n for p in PRIMITIVES.values() for n, param in p.params.items() if param.kind is COUNT}
    indices = {n for p in PRIMITIVES.values() for n, param in p.params.items() if param.kind is INDEX}
    assert INT_PARAMS == counts | indices
    assert LIST_PARAMS == {n for p in PRIMITIVES.values() for n, param in p.params.items() if param.kind is LOOPS}
    assert set(_FACTOR_ARGS) == counts == set(count_params())


def test_the_trace_is_the_schedule_methods_and_replays_to_the_same_program() -> None:
    A, B = mc.placeholder((37, 29), name="A"), mc.placeholder((29, 53), name="B")
    k = mc.reduce_axis(29, "k")
    C = mc.compute((37, 53), lambda i, j: mc.sum(A[i, k] * B[k, j], axis=k), name="C")
    s = (mc.Schedule(C).tile("i", "j", 6, 16).split("k", nparts=3).reorder("i_o", "j_o", "k_o", "k_i", "i_i", "j_i")
         .cache_write("C", "j_o").pack("B", 1, 16).unroll("i_i").vectorize("j_i").parallel("i_o"))
    assert call_text(s.steps[2]) == "reorder('i_o', 'j_o', 'k_o', 'k_i', 'i_i', 'j_i')"
    assert call_text(s.steps[0]) == "tile(outer_loop='i', inner_loop='j', outer_factor=6, inner_factor=16)"
    # The trace is Python for these methods: replaying it call by call (parsed, not evaluated) gives s.
    import ast
    replayed = mc.Schedule(C)
    for line in s.trace().splitlines()[1:]:
        call = ast.parse(line.split("= s.", 1)[1], mode="eval").body
        assert isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
        args = [ast.literal_eval(a) for a in call.args]
        kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
        replayed = getattr(replayed, call.func.id)(*args, **kwargs)
    assert replayed.steps == s.steps and str(replayed) == str(s)
    a = np.random.default_rng(0).standard_normal((37, 29)).astype("float32")
    b = np.random.default_rng(1).standard_normal((29, 53)).astype("float32")
    np.testing.assert_allclose(mc.build(replayed)(a, b), a @ b, rtol=1e-4, atol=1e-4)
