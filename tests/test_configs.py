"""Every committed config file loads, validates and names a known learner and suite."""

from pathlib import Path

import pytest

from vsml_bench.config import load_config
from vsml_bench.registry import make_learner
from vsml_bench.tasks.suites import get_suite

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


def test_there_is_a_cpu_twin_for_every_config():
    names = {p.stem for p in CONFIGS}
    assert names, "no configs found"
    for name in names - {n for n in names if n.endswith("-cpu")}:
        assert f"{name}-cpu" in names, f"configs/{name}.yaml has no CPU-sized twin"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_loads_and_builds(path):
    config = load_config([path])
    suite = get_suite(config.suite)
    make_learner(config.agent, suite.meta_train[0].spec, **config.agent_options)
    if path.stem.endswith("-cpu"):
        spec = suite.meta_train[0].spec
        assert spec.input_size <= 64
        assert all(t.episode_length <= 500 for t in suite.meta_train + suite.meta_test)
