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


def _unbatched(batches):
    for batch in batches:
        for j in range(len(batch["image_index"])):
            yield {key: value[j] for key, value in batch.items()}


class TestCoreBatches(IterationContract):
    """The core's epoch batches deliver the samples of its iterator, in batches of 4."""

    def rank_keys(self, ds, *, epoch, rank, world_size, num_workers):
        return [
            sample_key(s)
            for w in range(num_workers)
            for s in _unbatched(
                ds.epoch(epoch, rank=rank, world_size=world_size, worker=w, num_workers=num_workers).batches(4)
            )
        ]

    def resumed_keys(self, ds, *, epoch, stop):
        # batches of `stop`, then the rest in batches of 4 from the saved state
        it = ds.epoch(epoch).batches(max(stop, 1))
        head = [sample_key(s) for s in _unbatched([next(it)])][:stop] if stop else []
        state = it.state() if stop else ds.epoch(epoch).state()
        return head, [sample_key(s) for s in _unbatched(ds.epoch(state=state).batches(4))]

    def restore_foreign_state(self, ds, other):
        other.epoch(state=ds.epoch(0).batches(2).state())
