"""The core iterator against the shared iteration contract."""

from __future__ import annotations

from contract import IterationContract, sample_key


class TestCoreIterator(IterationContract):
    """The core's own iterator keeps the contract (the adapters' oracle)."""

    def rank_keys(self, ds, *, epoch, rank, world_size, num_workers):
        return [
            sample_key(s)
            for w in range(num_workers)
            for s in ds.epoch(epoch, rank=rank, world_size=world_size, worker=w, num_workers=num_workers)
        ]

    def resumed_keys(self, ds, *, epoch, stop):
        it = ds.epoch(epoch)
        head = [sample_key(next(it)) for _ in range(stop)]
        state = it.state()
        return head, [sample_key(s) for s in ds.epoch(state=state)]

    def restore_foreign_state(self, ds, other):
        other.epoch(state=ds.epoch(0).state())
