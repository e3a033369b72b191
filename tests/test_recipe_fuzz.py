"""A recipe fuzzer (hypothesis, derandomized): generated recipes, valid and broken, over every registered method
and field, run on a tiny model. Each must either run or stop with a clear slimbert error, never a traceback, and
an error must leave no output behind. The run records that every method appears and that a good share of the
cases reach the method's ``apply``; it is bounded in time (a few examples per method, 2 training steps each)."""

from __future__ import annotations

import dataclasses
import time
import types
from collections import Counter
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_method_matrix import MATRIX, builtin_methods

import slimbert.api as api
from slimbert.errors import SlimbertError
from slimbert.methods import available_methods
from slimbert.recipe import Recipe
from slimbert.training.settings import RunSettings

EXAMPLES_PER_METHOD = 8
ODD_VALUES = st.sampled_from([None, -1, 0, 0.5, 1e9, float("inf"), float("nan"), "", "bogus", [], {}, True, [1, 2]])


def value_for(tp: Any) -> st.SearchStrategy:
    """Values of a config field's type, mostly valid and sometimes out of range, plus the odd wrong type."""
    origin = get_origin(tp)
    if origin is Literal:
        return st.sampled_from(list(get_args(tp)) + ["not-a-choice"])
    if origin in (Union, types.UnionType):
        return st.one_of([value_for(a) for a in get_args(tp)])
    if tp is type(None):
        return st.none()
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(-2, 6)
    if tp is float:
        return st.one_of(st.floats(-0.5, 1.5), st.sampled_from([0.0, 2.0, float("inf"), float("nan")]))
    if tp is str:
        return st.sampled_from(["", "x", "uniform", "last"])
    if origin in (list, tuple):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        return st.lists(value_for(args[0]) if args else ODD_VALUES, max_size=3)
    if dataclasses.is_dataclass(tp):
        hints = get_type_hints(tp)
        fields = [f.name for f in dataclasses.fields(tp)]
        return st.dictionaries(st.sampled_from(fields), st.deferred(lambda: ODD_VALUES), max_size=2).flatmap(
            lambda d: st.fixed_dictionaries({k: st.one_of(value_for(hints[k]), ODD_VALUES) for k in d}))
    return ODD_VALUES


@st.composite
def step_for(draw, method: str) -> Any:
    """A step of ``method``: its tiny matrix fields with 0-2 fields changed, sometimes an unknown field, a distill
    block, or a malformed step altogether."""
    kind = draw(st.sampled_from(["fields"] * 8 + ["unknown-field", "distill", "not-a-mapping"]))
    if kind == "not-a-mapping":
        return draw(st.sampled_from([method, ["method", method], 3, None]))
    cfg_cls = available_methods()[method].config_cls
    hints = get_type_hints(cfg_cls)
    step = {"method": method, **MATRIX[method]}
    for name in draw(st.lists(st.sampled_from(cfg_cls.field_names()), max_size=2, unique=True)):
        odd = draw(st.integers(0, 4)) == 0  # mostly values of the field's type (in range or not), sometimes any
        step[name] = draw(ODD_VALUES if odd else value_for(hints[name]))
    if kind == "unknown-field":
        step[draw(st.sampled_from(["sparsityy", "lr", "bits_"]))] = 1
    if kind == "distill":
        step["distill"] = draw(st.one_of(st.just({}), value_for(hints.get("distill", dict)), ODD_VALUES,
                                         st.fixed_dictionaries({"temperature": st.floats(-1, 3)})))
    return step


@st.composite
def recipe_for(draw, method: str) -> dict:
    steps = [draw(step_for(method))]
    if draw(st.booleans()):
        steps.append(draw(step_for(draw(st.sampled_from(sorted(MATRIX))))))
    return {"name": "fuzz", "steps": steps}


def test_fuzzed_recipes_run_or_fail_cleanly(tiny_bert_dir, tiny_glue, tmp_path_factory, monkeypatch):
    applied: Counter = Counter()
    outcomes: Counter = Counter()
    real_get_method = api.get_method

    def counting_get_method(name):
        method = real_get_method(name)

        def apply(bundle, cfg, ctx):
            applied[name] += 1
            return method.apply(bundle, cfg, ctx)
        return dataclasses.replace(method, apply=apply)

    monkeypatch.setattr(api, "get_method", counting_get_method)
    run_settings = RunSettings(data_dir=str(tiny_glue), max_train_samples=16, max_eval_samples=8, max_steps=2,
                               batch_size=8)
    started = time.perf_counter()
    seen: set[str] = set()

    for method in sorted(builtin_methods()):
        @settings(max_examples=EXAMPLES_PER_METHOD, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(recipe=recipe_for(method))
        def case(recipe):
            seen.update(s["method"] for s in recipe["steps"] if isinstance(s, dict) and isinstance(s.get("method"), str))
            root = tmp_path_factory.mktemp("fuzz")
            out = root / "out"
            try:
                api.compress(tiny_bert_dir, "sst2", Recipe.from_dict(recipe), out, settings=run_settings, latency=False,
                             export=False, log=lambda m: None)
            except SlimbertError as exc:
                assert str(exc), "a slimbert error must say what is wrong"
                assert sorted(p.name for p in root.iterdir()) == [], f"{recipe} left {list(root.iterdir())}"
                outcomes["clear error"] += 1
                return
            assert (out / "report.json").is_file()
            outcomes["ran"] += 1

        case()

    total = sum(outcomes.values())
    assert seen >= builtin_methods()
    assert set(applied) >= builtin_methods(), f"never applied: {builtin_methods() - set(applied)}"
    assert sum(applied.values()) >= 0.4 * total, (applied, outcomes)
    assert outcomes["ran"] > 0 and outcomes["clear error"] > 0
    assert time.perf_counter() - started < 900
