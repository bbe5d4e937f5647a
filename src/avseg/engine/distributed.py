"""Processes under torchrun: which one this is, its device, and what the processes exchange.

torchrun (or any launcher that sets the same variables) starts each process with
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``, and with ``MASTER_ADDR``/``MASTER_PORT``
from its own rendezvous, on any number of machines. A process started without them
is rank 0 of 1: nothing is exchanged and no process group is made, so every command
runs the same code alone or under torchrun.

Decisions:

* ``avseg train`` joins with NCCL on GPUs (DDP's gradients live there) and gloo on
  CPUs. ``avseg segment`` and ``avseg evaluate`` exchange only small CPU values
  (the corpus plan and index rows; the metric sums, in float64) and always join with
  gloo, which works on every machine, with or without GPUs.
* Each process runs on the GPU of its ``LOCAL_RANK`` (its index on its machine) when
  the device is CUDA; on a CPU every process shares the machine's cores.
* The processes wait for the slowest at the end of a corpus or an evaluation, which
  may be hours behind on an uneven corpus, so segment and evaluate wait up to
  :data:`LONG_WAIT`. A process that dies ends the job through torchrun, which stops
  the others, not through this timeout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Sequence, TypeVar

import torch

from avseg.errors import ConfigError

LONG_WAIT = timedelta(days=7)
"""How long a process waits for the others in segment and evaluate (see the module docstring)."""

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """This process's place among torchrun's processes, and the collective operations between them
    (each is the identity for rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def several(self) -> bool:
        return self.world > 1

    def shard(self, items: Sequence[T]) -> list[T]:
        """This process's share of ``items``: every ``world``-th item from its rank's. Round-robin keeps shards
        even when the list is ordered by size, and every process computes the same split from the same list."""
        return list(items[self.rank :: self.world])

    def takes(self, index: int) -> bool:
        """Whether item ``index`` of a list is this process's (the same rule as :meth:`shard`)."""
        return index % self.world == self.rank

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` summed over the processes (a CPU tensor; float64 sums keep every count exact up to 2^53)."""
        if self.several:
            values = values.clone()
            torch.distributed.all_reduce(values)
        return values

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value``, in rank order, on every process."""
        if not self.several:
            return [value]
        gathered: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(gathered, value)
        return gathered

    def from_first(self, value: Any) -> Any:
        """Rank 0's ``value`` on every process (what rank 0 decided, so that all act on one view)."""
        if not self.several:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.several:
            torch.distributed.barrier()

    def device(self, device: torch.device) -> torch.device:
        """The device this process runs on: the GPU of its ``LOCAL_RANK`` when ``device`` is CUDA and there are
        several processes; ``device`` otherwise."""
        if not self.several or device.type != "cuda":
            return device
        if self.local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {self.local_rank}: this machine has {torch.cuda.device_count()} CUDA devices; start at most that many processes per machine")
        return torch.device("cuda", self.local_rank)


def launched() -> Ranks:
    """Where torchrun's variables put this process (rank 0 of 1 without them); joins nothing."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers (torchrun sets them)") from None
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"RANK {rank} of WORLD_SIZE {world}: expected 0 <= RANK < WORLD_SIZE (torchrun sets them)")
    return Ranks(rank, world, local_rank)


def join(backend: str, timeout: timedelta = LONG_WAIT) -> Ranks:
    """:func:`launched`, with the process group joined (``backend``: ``gloo`` or ``nccl``) when there are several
    processes and it is not joined yet. The group stays for the life of the process: one script may run several
    commands in it (torchrun's store does not take a second joining after a group is destroyed)."""
    ranks = launched()
    if ranks.several and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend, timeout=timeout)
    return ranks
