"""Every config key of every config-driven command refuses bad values by its declared rule.

For each key, a bad value is drawn from the key's own type and range (outside the bounds, not finite,
true/false for a number, an unknown choice, a mapping for a scalar, a list of the wrong length...); the
command must exit 2 with exactly one ``error:`` line that names the key, print no traceback, and write
nothing. The values are derived from the schema, so a key added later is covered without a new case.
"""

from __future__ import annotations

import contextlib
import io
import math
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcl_video.cli import main
from mcl_video.evaluation.finetune_config import FinetuneConfig
from mcl_video.training.config import PretrainConfig
from mcl_video.training.schema import keys, sections

COMMANDS = {"pretrain": PretrainConfig, "finetune": FinetuneConfig}


def _bounds(metadata) -> dict[str, float]:
    out = {}
    for meta in metadata:
        for attr in ("ge", "gt", "le", "lt"):
            if getattr(meta, attr, None) is not None:
                out[attr] = getattr(meta, attr)
    return out


def _finite_only(metadata) -> bool:
    return any(getattr(m, "allow_inf_nan", None) is False for m in metadata)


def _unwrap(annotation) -> tuple[Any, list]:
    metadata = []
    while get_origin(annotation) is Annotated:
        annotation, *more = get_args(annotation)
        metadata += more
    return annotation, metadata


def _number_strategy(kind, metadata):
    """Values a number key with these rules must refuse."""
    b = _bounds(metadata)
    bad = [st.just("true"), st.just("[1, 2]"), st.just("{a: 1}"), st.text(alphabet="xyz", min_size=1)]
    if "ge" in b:
        bad.append(st.floats(max_value=b["ge"], exclude_max=True, allow_nan=False, allow_infinity=False)
                   .map(lambda v: int(math.floor(v)) if kind is int else v)
                   .filter(lambda v: v < b["ge"]))
    if "gt" in b:
        bad.append(st.floats(max_value=b["gt"], allow_nan=False, allow_infinity=False)
                   .map(lambda v: int(math.floor(v)) if kind is int else v))
    if "le" in b:
        bad.append(st.floats(min_value=b["le"], exclude_min=True, allow_nan=False, allow_infinity=False)
                   .map(lambda v: int(math.ceil(v)) if kind is int else v)
                   .filter(lambda v: v > b["le"]))
    if "lt" in b:
        bad.append(st.floats(min_value=b["lt"], allow_nan=False, allow_infinity=False)
                   .map(lambda v: int(math.ceil(v)) if kind is int else v))
    if kind is float and _finite_only(metadata):
        bad.append(st.sampled_from([".inf", "-.inf", ".nan"]))
    if kind is int:
        bad.append(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6)
                   .filter(lambda v: not float(v).is_integer()))
    return st.one_of(bad)


def bad_values(annotation) -> st.SearchStrategy:
    """A strategy of command-line texts (or YAML values) that the key typed ``annotation`` must refuse."""
    kind, metadata = _unwrap(annotation)
    origin = get_origin(kind)
    if kind is bool:
        return st.sampled_from(["maybe", "2", "[true]", "{a: 1}", "0.5"])
    if kind in (int, float):
        return _number_strategy(kind, metadata)
    if kind is str:
        return st.sampled_from(["[1, 2]", "{a: 1}"]).map(lambda v: ("yaml", v))  # a value no text key takes
    if origin is Literal:
        choices = {str(c) for c in get_args(kind)}
        return st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12).filter(
            lambda v: v not in choices and v not in ("null", "true", "false", "yes", "no", "on", "off", "y",
                                                     "n"))
    if origin is tuple:
        n = len(get_args(kind))
        inner = bad_values(get_args(kind)[0]) if get_args(kind) else st.just("x")
        wrong_length = st.just(yaml.safe_dump([0.5] * (n + 1), default_flow_style=True).strip())
        return st.one_of(wrong_length, st.just("3"), inner.filter(lambda v: isinstance(v, str)).map(
            lambda v: "[" + ", ".join([v] + ["0.5"] * (n - 1)) + "]"))
    if origin is list:
        inner = bad_values(get_args(kind)[0])
        listed = inner.filter(lambda v: isinstance(v, str)).map(lambda v: f"[{v}]")
        return st.one_of(st.just("{a: 1}"), listed)
    if origin is dict:
        return st.sampled_from(["[1, 2]", "3", "abc"])
    if origin in (Union, type(int | str)):
        members = [m for m in get_args(kind) if m is not type(None)]
        if len(members) == 1:  # Optional[X]: X's bad values (null is allowed)
            return bad_values(members[0])
        literal = [m for m in members if get_origin(m) is Literal]
        numbers = [m for m in members if _unwrap(m)[0] in (int, float)]
        assert literal and numbers, annotation
        return _number_strategy(_unwrap(numbers[0])[0], _unwrap(numbers[0])[1]).filter(
            lambda v: not isinstance(v, str) or v.startswith("[") or v.startswith("{") or v == "true")
    raise AssertionError(f"no bad values known for {annotation!r}: extend bad_values")


CASES = [(command, dotted) for command, cls in COMMANDS.items() for dotted in keys(cls)]


def _annotation(cls, dotted):
    sec, key = dotted.split(".")
    return sections(cls)[sec].model_fields[key].annotation


def _run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = main(argv)
    return status, err.getvalue()


@pytest.mark.parametrize("command,dotted", CASES, ids=[f"{c}:{k}" for c, k in CASES])
def test_every_key_refuses_its_bad_values(command, dotted, tmp_path_factory):
    cls = COMMANDS[command]
    base = {"model.backbone": "r3d_18"} if command == "finetune" else {}

    @settings(max_examples=5, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])
    @given(bad_values(_annotation(cls, dotted)))
    def check(value):
        folder = tmp_path_factory.mktemp("bad")
        given = {"run.out": str(folder / "out"), **base}
        given.pop(dotted, None)  # the bad value must not be overridden by a good one
        argv = [command, *(f"{k}={v}" for k, v in given.items())]
        if isinstance(value, tuple):  # a YAML value given in a config file
            sec, key = dotted.split(".")
            path = folder / "c.yaml"
            path.write_text(f"{sec}:\n  {key}: {value[1]}\n")
            argv += ["--config", str(path)]
        else:
            argv.append(f"{dotted}={value}")
        status, err = _run(argv)
        lines = [line for line in err.splitlines() if line.strip()]
        assert status == 2, (argv, err)
        assert len(lines) == 1 and lines[0].startswith("error: ") and dotted in lines[0], (argv, err)
        assert "Traceback" not in err
        assert sorted(p.name for p in folder.iterdir()) == (["c.yaml"] if isinstance(value, tuple) else [])

    check()


def test_the_harness_accepts_good_values(tmp_path):
    """The control: with a good value the same command line gets past loading (--print-config)."""
    for command in COMMANDS:
        base = ["backbone=r3d_18"] if command == "finetune" else []
        status, err = _run([command, f"run.out={tmp_path / 'out'}", *base, "optim.lr=0.5", "--print-config"])
        assert status == 0 and err == "", err
    assert not (tmp_path / "out").exists()
