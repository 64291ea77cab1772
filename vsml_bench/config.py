"""Typed run configuration: YAML files plus `key=value` overrides, checked by OmegaConf.

`load_config(files, overrides)` merges, in order, the defaults below, each YAML file,
then the dotted overrides (`es.population=128`, `agent_options.hidden=[32]`). An unknown
key or a value of the wrong type is a `UserError` that names it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vsml_bench.errors import UserError


@dataclass
class ESConfig:
    """Evolution strategy settings (defaults: the reference's OpenAI-ES)."""

    strategy: str = "Open_ES"
    population: int = 64
    std: float = 0.05
    learning_rate: float = 0.025
    antithetic: bool = True
    fitness_shaping: str = "none"
    members_together: int = 0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class GradientConfig:
    """Backpropagation through whole episodes (the reference's alternative)."""

    batch_size: int = 128
    learning_rate: float = 1e-3
    clip_norm: float = 25.0


@dataclass
class CloningConfig:
    """Backprop cloning: VSML's LSTM trained to act as weights (training/cloning.py)."""

    batch_size: int = 128
    sequence_length: int = 64
    steps_per_generation: int = 50
    learning_rate: float = 3e-3
    clip_norm: float = 1.0
    weight_lr: float = 1.0
    weight_bound: float = 10.0
    init_range: float = 40.0


@dataclass
class EvalConfig:
    """Periodic meta-test on the suite's held-out tasks during meta-training."""

    every: int = 10
    episodes: int = 8
    episode_length: int | None = None
    seed: int = 1234


@dataclass
class LogConfig:
    """Where metrics go besides the local JSON-lines file."""

    wandb: bool = False
    wandb_mode: str = "offline"
    wandb_project: str = "vsml-bench"
    progress: bool = True


@dataclass
class TrainConfig:
    """Everything a meta-training run needs; saved resolved in the run folder."""

    agent: str = "vsml"
    agent_options: dict[str, Any] = field(default_factory=dict)
    suite: str = "randproj-mnist-cpu"
    method: str = "es"
    seed: int = 0
    generations: int = 100
    meta_loss: str = "auto"
    episode_length: int | None = None
    init_from: str | None = None
    checkpoint_every: int = 10
    es: ESConfig = field(default_factory=ESConfig)
    gradient: GradientConfig = field(default_factory=GradientConfig)
    cloning: CloningConfig = field(default_factory=CloningConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)


METHODS = ("es", "gradient", "cloning")
META_LOSSES = ("auto", "all", "last")


def _validate(config: TrainConfig) -> None:
    if config.method not in METHODS:
        raise UserError(f"method={config.method!r}; use one of {', '.join(METHODS)}")
    if config.meta_loss not in META_LOSSES:
        raise UserError(
            f"meta_loss={config.meta_loss!r}; use one of {', '.join(META_LOSSES)}"
        )
    positive = {
        "generations": config.generations,
        "checkpoint_every": config.checkpoint_every,
        "es.population": config.es.population,
        "gradient.batch_size": config.gradient.batch_size,
        "eval.every": config.eval.every,
        "eval.episodes": config.eval.episodes,
    }
    for name, value in positive.items():
        if value < 1:
            raise UserError(f"{name}={value} must be >= 1")
    if config.es.std <= 0:
        raise UserError(f"es.std={config.es.std} must be > 0")
    if config.es.antithetic and config.es.population % 2:
        raise UserError(
            f"es.population={config.es.population} must be even with antithetic "
            "sampling"
        )


def load_config(
    files: list[str | Path] = (), overrides: list[str] = (), base: Any = None
) -> TrainConfig:
    """Merge defaults, YAML files and `key=value` overrides into a checked config."""
    try:
        merged = OmegaConf.structured(TrainConfig if base is None else base)
        for path in files:
            path = Path(path)
            if not path.is_file():
                raise UserError(f"config file {path} does not exist")
            merged = OmegaConf.merge(merged, OmegaConf.load(path))
        for item in overrides:
            if "=" not in item:
                raise UserError(f"override {item!r}: expected key=value")
        merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        first_line = str(e).splitlines()[0]
        key = getattr(e, "full_key", None)
        where = f" (key {key})" if key else ""
        raise UserError(f"config error{where}: {first_line}") from e
    _validate(config)
    return config


def to_dict(config: TrainConfig) -> dict[str, Any]:
    """The config as plain JSON-ready data."""
    return OmegaConf.to_container(OmegaConf.structured(config), resolve=True)


def to_yaml(config: TrainConfig) -> str:
    """The config as YAML (what a run folder keeps)."""
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def config_hash(config: TrainConfig) -> str:
    """A short, stable hash of the resolved config."""
    text = json.dumps(to_dict(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
