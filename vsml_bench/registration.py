"""Registration of the built-in tasks as Gymnasium ids (written by the gym worker)."""


def register_gymnasium_envs() -> None:
    """Register every built-in task under `vsml_bench/...`."""
