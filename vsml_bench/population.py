"""Running many episodes (population members) together: `vmap`, or in sequence.

On an accelerator every member should run at once under `vmap`. On a CPU the opposite
holds for the costly learners: vmapping VSML over 8 members of a 784->10 network ran at
about half the summed steps/s of running them one after another with `lax.map` (the
batched per-member matrix products are small and the elementwise work gets no wider).
`map_members` does either, chosen by `together`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax


def default_together(count: int) -> int:
    """All members at once on accelerators, one at a time on a CPU."""
    return 1 if jax.default_backend() == "cpu" else count


def map_members(fn: Callable[..., Any], args: tuple, together: int = 0) -> Any:
    """`fn` applied to every member of `args` (arrays with a leading member axis).

    Args:
        fn: the function of one member's arguments.
        args: a tuple of pytrees whose leaves share the leading axis.
        together: members run at once (vmapped); 0 chooses `default_together`.
    Returns:
        `fn`'s outputs stacked along a new leading axis.
    """
    count = jax.tree.leaves(args)[0].shape[0]
    together = together or default_together(count)
    if together >= count:
        return jax.vmap(fn)(*args)
    batch = together if together > 1 else None
    return jax.lax.map(lambda a: fn(*a), args, batch_size=batch)
