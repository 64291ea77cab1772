"""A learner from an installed package appears everywhere through its entry point."""

import sys
import textwrap

import pytest

from vsml_bench.cli import main
from vsml_bench.learner import TaskSpec
from vsml_bench.registry import learner_names, make_learner

PLUGIN = textwrap.dedent(
    """
    from dataclasses import dataclass

    import jax.numpy as jnp

    from vsml_bench.learner import Learner


    @dataclass(frozen=True)
    class Prototype(Learner):
        description = "class means of the inputs seen so far (plug-in test)"

        def init(self, key):
            return {"scale": jnp.float32(1.0)}

        def reset(self, key, meta_params):
            c, d = self.spec.num_classes, self.spec.input_size
            return {"sums": jnp.zeros((c, d)), "x": jnp.zeros(d)}

        def step(self, meta_params, state, x, prev_label):
            sums = state["sums"] + prev_label[:, None] * state["x"][None]
            x = x.reshape(-1)
            logits = meta_params["scale"] * (sums @ x)
            return {"sums": sums, "x": x}, logits
    """
)


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """A package `protoplug` declaring the entry point `prototype`, on sys.path."""
    (tmp_path / "protoplug.py").write_text(PLUGIN)
    info = tmp_path / "protoplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: protoplug\n")
    (info / "entry_points.txt").write_text(
        "[vsml_bench.agents]\nprototype = protoplug:Prototype\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("protoplug", None)


def test_an_entry_point_learner_is_found_by_name_and_listed(installed_plugin, capsys):
    assert "prototype" in learner_names()
    learner = make_learner("prototype", TaskSpec((4,), 3))
    assert learner.num_meta_params() == 1

    assert main(["agents", "--task", "mnist-cpu"]) == 0
    out = capsys.readouterr().out
    assert "prototype" in out and "plug-in test" in out
    for name in ("vsml", "meta_rnn", "sgd", "transformer"):
        assert name in out


def test_agents_lists_vsml_with_a_size_independent_count(capsys):
    assert main(["agents", "--task", "mnist"]) == 0
    full = capsys.readouterr().out
    assert main(["agents", "--task", "mnist-cpu"]) == 0
    small = capsys.readouterr().out

    def count(text, name):
        line = next(row for row in text.splitlines() if f" {name} " in row)
        return int(line.split("│")[2].strip().replace(",", ""))

    assert count(full, "vsml") == count(small, "vsml") == 2384
    assert count(full, "meta_rnn") > count(small, "meta_rnn")
