"""Splitting a population over MPI ranks with mpi4py.

Every rank asks the strategy with the same key (so all ranks hold the same population),
evaluates its contiguous share, the fitness values are gathered on every rank, and
every rank tells the strategy the same update: no parameters are ever sent, only
fitness values. Without an MPI launcher (`mpiexec`), a run is one rank of one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from vsml_bench.errors import UserError

_LAUNCHER_VARIABLES = (
    "PMI_SIZE",
    "PMI_RANK",
    "OMPI_COMM_WORLD_SIZE",
    "MPI_LOCALNRANKS",
    "PMIX_RANK",
)


def launched_by_mpi() -> bool:
    """True when an MPI launcher started this process."""
    return any(v in os.environ for v in _LAUNCHER_VARIABLES)


@dataclass
class Communicator:
    """This process's rank among `size`; `allgather` joins each rank's share."""

    rank: int = 0
    size: int = 1
    comm: Any = None

    @property
    def is_root(self) -> bool:
        """The rank that writes files and prints."""
        return self.rank == 0

    def allgather(self, share: np.ndarray) -> np.ndarray:
        """Concatenate every rank's `share` (rank order) on every rank."""
        share = np.ascontiguousarray(share)
        if self.comm is None:
            return share
        gathered = np.empty((self.size, *share.shape), share.dtype)
        self.comm.Allgather(share, gathered)
        return gathered.reshape(self.size * share.shape[0], *share.shape[1:])

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value` on every rank (small Python objects only)."""
        return value if self.comm is None else self.comm.bcast(value, root=0)

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.comm is not None:
            self.comm.Barrier()

    def share(self, population: int) -> tuple[int, int]:
        """The [lo, hi) slice of the population that this rank evaluates."""
        if population % self.size:
            raise UserError(
                f"a population of {population} does not split evenly over {self.size} "
                f"MPI ranks; use a population divisible by {self.size}"
            )
        per_rank = population // self.size
        return self.rank * per_rank, (self.rank + 1) * per_rank


def communicator() -> Communicator:
    """MPI's world communicator when launched by MPI, else a single rank."""
    if not launched_by_mpi():
        return Communicator()
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    if world.Get_size() == 1:
        return Communicator()
    return Communicator(rank=world.Get_rank(), size=world.Get_size(), comm=world)
