"""Latency runtimes: the caller's module is left as it was; torch.compile's recompile limits."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo.config as dynamo_config

from dna_zoo.search.latency.runtimes import (
    RecompileLimitError,
    RuntimeOptions,
    compile_module,
    get_runtime,
    raise_compile_limits,
)


def test_preparing_does_not_move_or_cast_the_callers_module(tmp_path):
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).train()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    rt = get_runtime("torch", RuntimeOptions(precision="bf16", threads=1))
    run = rt.prepare(module, [torch.randn(1, 3, 8, 8)], tmp_path, "m")
    run()
    assert module.training  # not switched to eval
    for k, v in module.state_dict().items():
        assert v.dtype == before[k].dtype and torch.equal(v, before[k]), k


@pytest.fixture
def dynamo_limits():
    """Restore dynamo's settings after the test."""
    names = ("recompile_limit", "accumulated_recompile_limit", "fail_on_recompile_limit_hit")
    saved = {n: getattr(dynamo_config, n) for n in names}
    torch._dynamo.reset()
    yield
    for n, v in saved.items():
        setattr(dynamo_config, n, v)
    torch._dynamo.reset()


def test_compile_limits_are_raised_and_hitting_one_fails(dynamo_limits):
    raise_compile_limits(5000)
    assert dynamo_config.recompile_limit == 5000 and dynamo_config.fail_on_recompile_limit_hit


def test_more_entries_than_the_recompile_limit_is_an_error(dynamo_limits):
    xs = [torch.randn(2, 4)]
    modules = [torch.nn.Linear(4, n) for n in (2, 3, 5)]  # each entry recompiles the same forward
    compiled = [compile_module(m, xs, backend="eager", recompile_limit=2) for m in modules[:2]]
    assert len(compiled) == 2
    with pytest.raises(RecompileLimitError, match="recompile limit"):
        compile_module(modules[2], xs, backend="eager", recompile_limit=2)


def test_the_default_limit_compiles_many_entries(dynamo_limits):
    xs = [torch.randn(2, 4)]
    for n in range(1, 12):  # more than dynamo's default of 8
        f = compile_module(torch.nn.Linear(4, n), xs, backend="eager")
        with torch.inference_mode():
            assert f(*xs).shape == (2, n)
