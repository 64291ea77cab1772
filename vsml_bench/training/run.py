"""A meta-training run and its folder: config, metrics, checkpoints, resumption.

A run folder holds:

- `config.yaml`: the resolved config;
- `metrics.jsonl`: one JSON object per generation, written as the run goes (meta-test
  results are added to the generations that ran one);
- `checkpoints/NNNNNN.safetensors`: every `checkpoint_every` generations and at the end,
  each holding everything needed to continue (strategy state with its optimiser state
  and meta-parameters, the run's key, the generation and the config);
- `meta_params.safetensors`: the final meta-parameters (the search mean).

`train(config, out)` starts a run; `train(None, out, resume=True)` continues the newest
checkpoint of `out` and ends with the same result as a run that was never interrupted,
because generation g always uses the key `fold_in(run_key, g)`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vsml_bench import __version__
from vsml_bench.config import TrainConfig, load_config, to_dict, to_yaml
from vsml_bench.errors import UserError
from vsml_bench.evaluation import meta_test, summarise
from vsml_bench.learner import Learner
from vsml_bench.registry import make_learner
from vsml_bench.training.checkpoint import (
    atomic_write_text,
    load_checkpoint,
    save_checkpoint,
)
from vsml_bench.training.cloning import CloningTrainer
from vsml_bench.training.distributed import communicator
from vsml_bench.training.es import ESTrainer
from vsml_bench.training.gradient import GradientTrainer

logger = logging.getLogger(__name__)


class DivergedError(UserError):
    """The search distribution's mean became non-finite."""


@dataclass
class TrainResult:
    """What a finished run hands back."""

    meta_params: Any
    generation: int
    out: Path
    last_metrics: dict[str, Any]


def suite_tasks(config: TrainConfig):
    """The suite and its meta-training / meta-test tasks with the config's overrides."""
    import dataclasses

    from vsml_bench.tasks.suites import get_suite

    suite = get_suite(config.suite)
    train = suite.meta_train
    if config.episode_length is not None:
        train = tuple(
            dataclasses.replace(t, episode_length=config.episode_length) for t in train
        )
    test = suite.meta_test
    if config.eval.episode_length is not None:
        test = tuple(
            dataclasses.replace(t, episode_length=config.eval.episode_length)
            for t in test
        )
    return suite, train, test


def build_learner(config: TrainConfig, spec) -> Learner:
    """The config's learner for tasks of shape `spec`."""
    return make_learner(config.agent, spec, **config.agent_options)


def checkpoint_path(out: Path, generation: int) -> Path:
    """Where the checkpoint of a generation lives."""
    return Path(out) / "checkpoints" / f"{generation:06d}.safetensors"


def latest_checkpoint(out: Path) -> Path | None:
    """The newest checkpoint file of a run folder, if any."""
    files = sorted((Path(out) / "checkpoints").glob("[0-9]*.safetensors"))
    return files[-1] if files else None


def _evaluate(config: TrainConfig, meta_params, test_tasks) -> dict[str, float]:
    results = {}
    for task in test_tasks:
        learner = build_learner(config, task.spec)
        per_step = meta_test(
            learner, meta_params, task, config.eval.episodes, seed=config.eval.seed
        )
        summary = summarise(per_step["loss"], per_step["correct"])
        name = f"{task.dataset}/{task.split}"
        results[f"test/{name}/accuracy"] = summary["accuracy"]
        results[f"test/{name}/cross_entropy"] = summary["cross_entropy"]
    results["test/accuracy"] = float(
        np.mean([v for k, v in results.items() if k.endswith("/accuracy")])
    )
    return results


def _trim_metrics(path: Path, generation: int) -> float:
    """Drop the lines of generations after `generation` (they are redone on resume).

    Returns:
        The wall time the run had spent up to `generation` (0 for a new run).
    """
    if not path.exists():
        return 0.0
    kept, seconds = [], 0.0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("generation", 0) <= generation:
            kept.append(line)
            seconds = float(record.get("seconds", seconds))
    atomic_write_text(path, "".join(line + "\n" for line in kept))
    return seconds


def _open_wandb(config: TrainConfig, out: Path, resume: bool):
    if not config.log.wandb:
        return None
    import wandb

    return wandb.init(
        project=config.log.wandb_project,
        mode=config.log.wandb_mode,
        dir=str(out),
        config=to_dict(config),
        resume="allow" if resume else None,
        id=out.name if resume else None,
    )


def train(
    config: TrainConfig | None,
    out: str | Path,
    resume: bool = False,
    callback: Callable[[dict[str, Any]], None] | None = None,
    overrides: list[str] = (),
) -> TrainResult:
    """Meta-train (ES, gradient or cloning, by `config.method`); see the module doc.

    Args:
        config: the run's config (None with `resume`: read it from the folder).
        out: the run folder.
        resume: continue the newest checkpoint in `out`.
        callback: called with each generation's metrics (for progress displays).
        overrides: `key=value` changes applied to the saved config on resume (for
            example more generations).
    """
    out = Path(out)
    comm = communicator()
    if resume:
        saved = out / "config.yaml"
        if not saved.is_file():
            raise UserError(
                f"--resume {out}: no config.yaml there; is it a run folder?"
            )
        config = load_config([saved], list(overrides))
    elif config is None:
        raise UserError("train needs a config")
    suite, train_tasks, test_tasks = suite_tasks(config)
    learner = build_learner(config, train_tasks[0].spec)
    if learner.num_meta_params() == 0:
        raise UserError(
            f"learner {config.agent!r} has no meta-parameters: there is nothing to "
            "meta-train (meta-test it with `vsml-bench eval`)"
        )
    trainer_class = {
        "es": ESTrainer,
        "gradient": GradientTrainer,
        "cloning": CloningTrainer,
    }[config.method]
    trainer = trainer_class(config, learner, train_tasks, comm)

    run_key = jax.random.PRNGKey(config.seed)
    initial = None
    if config.init_from:
        from vsml_bench.harness import load_meta_params

        initial, _ = load_meta_params(config.init_from, learner)
    state = trainer.init(jax.random.fold_in(run_key, 0x1A17), initial)
    start = 0
    if resume and (path := latest_checkpoint(out)) is not None:
        tree, meta = load_checkpoint(path, {"state": state, "key": run_key})
        state, run_key, start = tree["state"], tree["key"], int(meta["generation"])
        logger.info("resumed %s at generation %d", out, start)
    elif resume:
        logger.info("no checkpoint in %s yet: starting from generation 0", out)

    metrics_path = out / "metrics.jsonl"
    if comm.is_root:
        out.mkdir(parents=True, exist_ok=True)
        if not resume:
            existing = latest_checkpoint(out)
            if existing is not None:
                raise UserError(
                    f"{out} already holds a run (checkpoint {existing.name}); use "
                    "--resume to continue it or choose another --out"
                )
        atomic_write_text(out / "config.yaml", to_yaml(config))
        spent = _trim_metrics(metrics_path, start)
    spent = comm.broadcast(spent if comm.is_root else None)
    run_logger = _open_wandb(config, out, resume) if comm.is_root else None

    def save(generation: int) -> None:
        if not comm.is_root:
            return
        metadata = {
            "generation": generation,
            "config": to_dict(config),
            "version": __version__,
            "agent": config.agent,
        }
        save_checkpoint(
            checkpoint_path(out, generation), {"state": state, "key": run_key}, metadata
        )

    metrics: dict[str, Any] = {}
    started = time.perf_counter()
    for generation in range(start, config.generations):
        key = jax.random.fold_in(run_key, generation)
        new_state, metrics, times = trainer.generation(state, key)
        finite = jax.tree.map(lambda a: jnp.all(jnp.isfinite(a)), new_state.mean)
        if not all(bool(f) for f in jax.tree.leaves(finite)):
            raise DivergedError(
                f"the search mean became non-finite at generation {generation + 1}; "
                f"the last good checkpoint is kept in {out / 'checkpoints'}"
            )
        state = new_state
        done = generation + 1
        metrics.update(
            generation=done,
            seconds=spent + time.perf_counter() - started,
            overhead=times.overhead,
            episodes=done * trainer.episodes_per_generation,
            steps=done * trainer.steps_per_generation,
        )
        if done % config.eval.every == 0 or done == config.generations:
            metrics.update(_evaluate(config, trainer.mean(state), test_tasks))
        if comm.is_root:
            with open(metrics_path, "a") as f:
                f.write(json.dumps(metrics) + "\n")
            if run_logger is not None:
                run_logger.log(metrics, step=done)
        if done % config.checkpoint_every == 0 or done == config.generations:
            save(done)
        if callback is not None and comm.is_root:
            callback(metrics)

    meta_params = trainer.mean(state)
    if comm.is_root:
        save_checkpoint(
            out / "meta_params.safetensors",
            meta_params,
            {
                "agent": config.agent,
                "agent_options": dict(config.agent_options),
                "suite": config.suite,
                "method": config.method,
                "generation": config.generations,
                "episodes": int(metrics.get("episodes", 0)),
                "steps": int(metrics.get("steps", 0)),
                "seconds": float(metrics.get("seconds", 0.0)),
                "config": to_dict(config),
                "version": __version__,
            },
        )
    if run_logger is not None:
        run_logger.finish()
    comm.barrier()
    return TrainResult(meta_params, config.generations, out, metrics)
