"""Registration of the built-in tasks as Gymnasium ids `vsml_bench/<Name>-v0`.

Every entry of `vsml_bench.tasks.catalog.TASKS` becomes an id whose entry point is
`vsml_bench.gym_env:VsmlBenchEnv` and whose vector entry point is
`vsml_bench.gym_env:VsmlBenchVectorEnv`, with the task's name as keyword argument.
Entry points are given as strings, so registering imports neither the environments nor
any dataset and compiles nothing; `vsml_bench` calls it at import.
"""

from __future__ import annotations

import gymnasium

from vsml_bench.tasks.catalog import TASKS

ENTRY_POINT = "vsml_bench.gym_env:VsmlBenchEnv"
VECTOR_ENTRY_POINT = "vsml_bench.gym_env:VsmlBenchVectorEnv"


def register_gymnasium_envs() -> None:
    """Register every built-in task under its Gymnasium id (ids already there stay)."""
    for entry in TASKS.values():
        if entry.gym_id in gymnasium.registry:
            continue
        gymnasium.register(
            id=entry.gym_id,
            entry_point=ENTRY_POINT,
            vector_entry_point=VECTOR_ENTRY_POINT,
            kwargs={"task": entry.name},
        )
