"""How fast a learner runs: episode steps per second, FLOP rate, and a matmul yardstick.

`run_benchmark` times a jitted `rollout` of random episodes (one episode, or a
population of perturbed meta-parameters, each with its own episode, under `vmap`) and
reports its rate next to `matmul_gflops`, the float32 matrix-product rate measured in
the same process, so that numbers from different machines can be compared as ratios.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import statistics
import time
import typing
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vsml_bench.errors import UserError
from vsml_bench.learner import Learner, TaskSpec, rollout
from vsml_bench.population import default_together, map_members
from vsml_bench.registry import learner_class, make_learner

logger = logging.getLogger(__name__)

PERTURBATION_STD = 0.01
"""Std of the noise added to theta for each member of a benchmarked population."""


def _timed(run: Any, repeats: int) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds of `repeats` calls of `run()`, each waiting
    for its result."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        jax.block_until_ready(run())
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """Float32 matrix-product rate of this process's default device, in GFLOP/s.

    A jitted [size, size] x [size, size] product, best of `repeats` timed calls after
    a warm-up; counts 2 * size^3 FLOPs per product.
    """
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.standard_normal((size, size), np.float32))
    b = jnp.asarray(rng.standard_normal((size, size), np.float32))
    product = jax.jit(jnp.matmul)
    jax.block_until_ready(product(a, b))
    best = min(_timed(lambda: product(a, b), repeats)[0])
    return 2.0 * size**3 / best / 1e9


def _cost(compiled: Any) -> dict[str, float]:
    """XLA's cost analysis of a compiled function as a flat dict ({} if none)."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # backends without cost analysis raise various errors
        return {}
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return dict(cost or {})


def _build(agent: str, shape: tuple[int, ...], options: dict[str, Any]) -> Learner:
    """The learner for shape (inputs, [hidden...], classes)."""
    if len(shape) < 2 or any(int(s) < 1 for s in shape):
        raise UserError(
            f"benchmark shape {shape}: expected positive sizes "
            "(inputs, [hidden ...], classes)"
        )
    options = dict(options)
    cls = learner_class(agent)
    hints = typing.get_type_hints(cls)
    takes_hidden = "hidden" in {f.name for f in dataclasses.fields(cls)} and (
        typing.get_origin(hints["hidden"]) is tuple
    )
    if takes_hidden and "hidden" not in options:
        options["hidden"] = tuple(int(s) for s in shape[1:-1])
    spec = TaskSpec((int(shape[0]),), int(shape[-1]))
    return make_learner(agent, spec, **options)


def run_benchmark(
    agent: str,
    shape: tuple[int, ...],
    steps: int,
    population: int = 1,
    options: dict[str, Any] | None = None,
    seed: int = 0,
    repeats: int = 3,
    matmul_size: int = 2048,
    together: int = 0,
) -> dict[str, Any]:
    """Time `steps` online steps of learner `agent` on random data.

    Args:
        agent: a registered learner name (or module:attribute).
        shape: (inputs, [hidden sizes ...], classes), e.g. (784, 32, 10). Hidden sizes
            become the `hidden` option of learners that have one; others use only the
            first and last entry.
        steps: episode length T.
        population: number of episodes; above 1, every member gets its own
            perturbed copy of theta and its own episode, run in one jitted call.
        together: members run at once under `vmap` (the rest in sequence); 0 picks
            the device's default (`vsml_bench.population.default_together`).
        options: learner options.
        seed: seeds theta, the perturbations, the data and the episode keys. The
            data are standard normal inputs and uniformly random labels.
        repeats: timed runs after the first; the best is reported.
        matmul_size: size of the square float32 matmul used as the yardstick.

    Returns:
        A dict: agent, shape, steps, population, options, steps_per_s (summed over
        the population), seconds (best run) and seconds_median, compile_s,
        cpu_seconds (process CPU time of the run with the least) and
        steps_per_cpu_s (steps per CPU-second: less sensitive to other programs
        sharing the machine), load_average (1-minute, where the OS reports it),
        flops_per_step and transcendentals_per_step (XLA's cost analysis of one
        compiled step, per episode; None where unavailable), gflops (flops_per_step
        times steps_per_s), matmul_gflops, ratio_to_matmul, num_meta_params, device.
    """
    if steps < 1 or population < 1 or repeats < 1:
        raise UserError(
            f"benchmark steps={steps}, population={population}, repeats={repeats}: "
            "each must be at least 1"
        )
    options = dict(options or {})
    learner = _build(agent, tuple(shape), options)
    spec = learner.spec

    # Data and perturbations from numpy: eager JAX random calls would each compile
    # a kernel, which takes longer than a small benchmark itself.
    rng = np.random.default_rng(seed)
    theta = jax.jit(learner.init)(jax.random.PRNGKey(seed))
    x = rng.standard_normal((population, steps, *spec.input_shape), np.float32)
    y = rng.integers(0, spec.num_classes, (population, steps))
    episode_seeds = rng.integers(0, 2**31 - 1, population)
    keys = jax.jit(jax.vmap(jax.random.PRNGKey))(episode_seeds)
    if population == 1:
        episode = jax.jit(rollout, static_argnums=0)
        args = (learner, theta, keys[0], x[0], y[0])
    else:
        members = jax.tree.map(
            lambda leaf: (
                leaf
                + PERTURBATION_STD
                * rng.standard_normal((population, *leaf.shape)).astype(leaf.dtype)
            ),
            theta,
        )

        def population_rollout(learner, members, keys, x, y):
            return map_members(
                lambda m, k, xs, ys: rollout(learner, m, k, xs, ys),
                (members, keys, x, y),
                together,
            )

        episode = jax.jit(population_rollout, static_argnums=0)
        args = (learner, members, keys, x, y)

    start = time.perf_counter()
    compiled = episode.lower(*args).compile()
    compile_s = time.perf_counter() - start
    run_args = args[1:]
    jax.block_until_ready(compiled(*run_args))
    seconds, cpu_seconds = _timed(lambda: compiled(*run_args), repeats)
    best = min(seconds)
    steps_per_s = population * steps / best

    cost = step_cost(learner, population)
    flops_per_step = cost.get("flops")
    trans_per_step = cost.get("transcendentals")
    gflops = flops_per_step * steps_per_s / 1e9 if flops_per_step else None
    reference = matmul_gflops(matmul_size)

    result = {
        "agent": agent,
        "shape": tuple(int(s) for s in shape),
        "steps": steps,
        "population": population,
        "together": together or default_together(population),
        "options": options,
        "steps_per_s": steps_per_s,
        "seconds": best,
        "seconds_median": statistics.median(seconds),
        "compile_s": compile_s,
        "cpu_seconds": min(cpu_seconds),
        "steps_per_cpu_s": population * steps / min(cpu_seconds),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "flops_per_step": flops_per_step,
        "transcendentals_per_step": trans_per_step,
        "gflops": gflops,
        "matmul_gflops": reference,
        "ratio_to_matmul": gflops / reference if gflops is not None else None,
        "num_meta_params": learner.num_meta_params(),
        "device": str(jax.devices()[0]),
    }
    logger.info(
        "%s %s T=%d P=%d: %.0f steps/s, %s GFLOP/s (matmul %.0f)",
        agent,
        "x".join(map(str, shape)),
        steps,
        population,
        steps_per_s,
        "?" if gflops is None else f"{gflops:.1f}",
        reference,
    )
    return result


def step_cost(learner: Learner, population: int = 1) -> dict[str, float]:
    """XLA's cost analysis of one online step, per episode.

    Compiles `learner.step` (under `vmap` for a population, each member with its own
    theta) for abstract inputs, without running it. The whole rollout is not used
    because XLA's cost analysis counts a loop body once, whatever the trip count.

    Returns:
        `flops` and `transcendentals` per episode step, where the backend reports
        them (an empty dict otherwise).
    """
    theta = jax.eval_shape(learner.init, jax.random.PRNGKey(0))
    state = jax.eval_shape(learner.reset, jax.random.PRNGKey(0), theta)
    x = jax.ShapeDtypeStruct(learner.spec.input_shape, jnp.float32)
    prev = jax.ShapeDtypeStruct((learner.spec.num_classes,), jnp.float32)
    args = (theta, state, x, prev)
    step = learner.step
    if population > 1:
        step = jax.vmap(step)
        args = jax.tree.map(
            lambda leaf: jax.ShapeDtypeStruct((population, *leaf.shape), leaf.dtype),
            args,
        )
    cost = _cost(jax.jit(step).lower(*args).compile())
    return {
        name: cost[name] / population
        for name in ("flops", "transcendentals")
        if name in cost
    }


def format_row(result: dict[str, Any]) -> str:
    """One line of a benchmark table: shape, T, P, steps/s, GFLOP/s, ratio."""
    gflops = result["gflops"]
    ratio = result["ratio_to_matmul"]
    return (
        f"{result['agent']:>10s} {'x'.join(map(str, result['shape'])):>12s} "
        f"T={result['steps']:<5d} P={result['population']:<3d} "
        f"{result['steps_per_s']:9.0f} steps/s "
        f"{'-' if gflops is None else format(gflops, '7.1f')} GFLOP/s "
        f"matmul {result['matmul_gflops']:6.0f} "
        f"ratio {'-' if ratio is None else format(ratio, '.3f')}"
    )


__all__ = ["format_row", "matmul_gflops", "run_benchmark", "step_cost"]
