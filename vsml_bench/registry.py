"""Finding learners by name: built-in names, `module:attribute`, and entry points.

A package makes its learner appear everywhere by declaring an entry point in the group
`vsml_bench.agents`, e.g. in its pyproject.toml::

    [project.entry-points."vsml_bench.agents"]
    my_learner = "my_package.learner:MyLearner"
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from vsml_bench.errors import UserError
from vsml_bench.learner import Learner, TaskSpec
from vsml_bench.options import build

ENTRY_POINT_GROUP = "vsml_bench.agents"

BUILTIN_LEARNERS = {
    "vsml": "vsml_bench.agents.vsml:VSML",
    "meta_rnn": "vsml_bench.agents.meta_rnn:MetaRNN",
    "fw_memory": "vsml_bench.agents.fw_memory:FastWeightMemory",
    "hebbian": "vsml_bench.agents.hebbian:Hebbian",
    "fwp": "vsml_bench.agents.fwp:FastWeightProgrammer",
    "sgd": "vsml_bench.agents.online_sgd:OnlineSGD",
    "adam": "vsml_bench.agents.online_sgd:OnlineAdam",
    "transformer": "vsml_bench.agents.transformer:InContextTransformer",
}


def _plugin_learners() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def learner_names() -> list[str]:
    """Built-in names first, then those of installed plug-ins."""
    plugins = [n for n in sorted(_plugin_learners()) if n not in BUILTIN_LEARNERS]
    return list(BUILTIN_LEARNERS) + plugins


def _import_target(target: str, shown: str) -> Any:
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise UserError(f"learner {shown!r}: expected the form module:attribute")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise UserError(
            f"learner {shown!r}: cannot import module {module_name!r} ({e})"
        ) from e
    try:
        obj = module
        for part in attribute.split("."):
            obj = getattr(obj, part)
    except AttributeError as e:
        raise UserError(
            f"learner {shown!r}: module {module_name!r} has no attribute {attribute!r}"
        ) from e
    return obj


def learner_class(name: str) -> type[Learner]:
    """The learner class for a built-in name, a plug-in name, or `module:attribute`."""
    if name in BUILTIN_LEARNERS:
        target = BUILTIN_LEARNERS[name]
    elif ":" in name:
        target = name
    else:
        plugins = _plugin_learners()
        if name not in plugins:
            known = ", ".join(learner_names())
            raise UserError(
                f"unknown learner {name!r}; known learners: {known} "
                "(or give module:attribute for your own)"
            )
        target = plugins[name]
    cls = _import_target(target, name)
    if not (isinstance(cls, type) and issubclass(cls, Learner)):
        raise UserError(
            f"learner {name!r}: {target} is not a subclass of vsml_bench.Learner"
        )
    return cls


def make_learner(name: str, spec: TaskSpec, **options: Any) -> Learner:
    """Build learner `name` for tasks of shape `spec`, checking the options' types."""
    cls = learner_class(name)
    return build(cls, f"learner {name!r}", skip=("spec",), spec=spec, **options)
