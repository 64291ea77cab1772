"""vsml-bench: learned learning algorithms as a standard benchmark.

Importing this package registers the Gymnasium ids `vsml_bench/...` (cheaply: no JAX
work happens at import).
"""

from vsml_bench.learner import Learner, TaskSpec, rollout
from vsml_bench.registration import register_gymnasium_envs

__version__ = "0.1.0"
__all__ = ["Learner", "TaskSpec", "rollout", "__version__"]

register_gymnasium_envs()
