"""The learner benchmark: tiny runs return sane, finite, self-consistent fields.

No timing assertions: the numbers depend on the machine and its load.
"""

import math

import pytest

from vsml_bench.bench import format_row, matmul_gflops, run_benchmark, step_cost
from vsml_bench.errors import UserError
from vsml_bench.learner import TaskSpec
from vsml_bench.registry import BUILTIN_LEARNERS, make_learner

TINY = {"steps": 2, "repeats": 1, "matmul_size": 32}


def finite_positive(value):
    return value is not None and math.isfinite(value) and value > 0


def test_matmul_gflops_is_a_positive_rate():
    assert finite_positive(matmul_gflops(size=64, repeats=2))


def check_fields(result, agent, shape, steps, population):
    assert result["agent"] == agent
    assert (result["shape"], result["steps"], result["population"]) == (
        shape,
        steps,
        population,
    )
    for field in ("steps_per_s", "steps_per_cpu_s", "seconds", "matmul_gflops"):
        assert finite_positive(result[field]), field
    assert result["seconds"] <= result["seconds_median"]
    assert result["compile_s"] >= 0
    assert result["steps_per_s"] == pytest.approx(
        population * steps / result["seconds"]
    )
    if result["flops_per_step"] is not None:
        assert finite_positive(result["flops_per_step"])
        assert result["gflops"] == pytest.approx(
            result["flops_per_step"] * result["steps_per_s"] / 1e9
        )
        assert result["ratio_to_matmul"] == pytest.approx(
            result["gflops"] / result["matmul_gflops"]
        )
    assert format_row(result).strip().startswith(agent)


@pytest.mark.parametrize("agent", list(BUILTIN_LEARNERS))
def test_every_learner_runs(agent):
    result = run_benchmark(agent, (8, 3), **TINY)
    check_fields(result, agent, (8, 3), TINY["steps"], 1)


def test_population_runs_vmapped_with_per_episode_flops():
    result = run_benchmark("vsml", (8, 3), population=3, **TINY)
    check_fields(result, "vsml", (8, 3), TINY["steps"], 3)
    assert result["options"] == {}
    single = step_cost(make_learner("vsml", TaskSpec((8,), 3)))
    assert result["flops_per_step"] == pytest.approx(single["flops"], rel=0.05)


def test_vsml_flops_follow_the_connection_count():
    # The per-connection LSTM work dominates: 4x the connections, about 4x the FLOPs.
    def flops(inputs, *sizes):
        spec = TaskSpec((inputs,), sizes[-1])
        return step_cost(make_learner("vsml", spec, hidden=sizes[:-1]))["flops"]

    small = flops(16, 4)
    assert finite_positive(small)
    assert flops(64, 4) / small == pytest.approx(4, rel=0.1)
    # 16x8 + 8x4 connections against 16x4.
    assert flops(16, 8, 4) / small == pytest.approx(160 / 64, rel=0.1)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"shape": (8,)}, "(8,)"),
        ({"shape": (8, 0)}, "(8, 0)"),
        ({"shape": (8, 3), "steps": 0}, "steps=0"),
        ({"shape": (8, 3), "population": 0}, "population=0"),
        ({"shape": (8, 3), "options": {"no_such_option": 1}}, "no_such_option"),
    ],
)
def test_bad_input_is_a_user_error(kwargs, named):
    kwargs = {"steps": 2, **kwargs}
    with pytest.raises(UserError) as error:
        run_benchmark("vsml", **kwargs)
    assert named in str(error.value)
