"""zarrsample_torch: DataLoader iteration, DDP sharding, resuming, tensors, errors."""

from __future__ import annotations

import collections
import datetime
import doctest
import gc
import io
import itertools
import json
import multiprocessing
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

torch = pytest.importorskip("torch")

from contract import IterationContract, make_dataset, sample_key  # noqa: E402
from torch.utils.data import DataLoader, DistributedSampler  # noqa: E402

import zarrsample_torch  # noqa: E402
from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, ZarrsampleError, open_image  # noqa: E402
from zarrsample_torch import PatchIterableDataset, PatchMapDataset  # noqa: E402
from zarrsample_torch import _datasets, _tensors  # noqa: E402

from torchdata.stateful_dataloader import StatefulDataLoader  # noqa: E402  (the [torch] extra)

ROOT = Path(__file__).resolve().parents[1]
# torchdata 0.11 calls a torch API that torch 2.13 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning")


def workers(num_workers: int) -> dict:
    """DataLoader options for ``num_workers`` worker processes in these tests.

    Workers time out instead of hanging. Forking a process in which JAX or
    TensorFlow (imported by other test modules of the suite) runs threads
    can deadlock the child, so the workers then come from a forkserver
    (preloaded with torch, so that they start fast).
    """
    if num_workers == 0:
        return {"num_workers": 0}
    context = None
    if {"jax", "tensorflow"} & set(sys.modules):
        multiprocessing.get_context("forkserver").set_forkserver_preload(["torch", "zarrsample_core"])
        context = "forkserver"
    return {"num_workers": num_workers, "multiprocessing_context": context, "timeout": 60}


def keys_of(samples) -> list:
    return [sample_key(s) for s in samples]


def interleave(parts: list[list]) -> list:
    """The order in which a DataLoader yields its workers' parts (round robin)."""
    return [k for group in itertools.zip_longest(*parts) for k in group if k is not None]


def core_keys(ds, epoch, *, num_workers=1, rank=0, world_size=1, drop_remainder=False) -> list:
    """What a DataLoader with ``num_workers`` over the core should yield, in order."""
    return interleave([
        keys_of(ds.epoch(epoch, rank=rank, world_size=world_size, worker=w, num_workers=num_workers,
                         drop_remainder=drop_remainder))
        for w in range(num_workers)
    ])


def roundtrip(state):
    """A loader state after ``torch.save`` / ``torch.load`` (weights_only)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def stateful_loader(ds, num_workers):
    return StatefulDataLoader(ds, batch_size=None, **workers(num_workers))


class TestTorchContract(IterationContract):
    """A DataLoader over PatchIterableDataset keeps the shared contract."""

    def rank_keys(self, ds, *, epoch, rank, world_size, num_workers):
        torch_ds = PatchIterableDataset(ds, epoch=epoch, rank=rank, world_size=world_size)
        return keys_of(DataLoader(torch_ds, batch_size=None, **workers(num_workers)))

    def resumed_keys(self, ds, *, epoch, stop):
        first = PatchIterableDataset(ds, epoch=epoch)
        loader = stateful_loader(first, 1)  # the worker's state travels in the loader's
        it = iter(loader)
        head = [sample_key(next(it)) for _ in range(stop)]
        state = roundtrip(loader.state_dict())
        del it
        loader = stateful_loader(PatchIterableDataset(ds, epoch=epoch), 1)
        loader.load_state_dict(state)
        return head, keys_of(loader)

    def restore_foreign_state(self, ds, other):
        # In the main process: a refusal in a worker costs a 5 s worker join in torch.
        first = PatchIterableDataset(ds)
        loader = stateful_loader(first, 0)
        next(iter(loader))
        state = loader.state_dict()
        loader = stateful_loader(PatchIterableDataset(other), 0)
        loader.load_state_dict(state)
        list(loader)


# -- one epoch through a DataLoader ------------------------------------------


@pytest.mark.parametrize("num_workers", [0, 2])
def test_each_patch_once_with_the_content_of_the_core(num_workers):
    ds = make_dataset()
    by_key = {sample_key(ds[i]): i for i in range(len(ds))}
    samples = list(DataLoader(PatchIterableDataset(ds, epoch=3), batch_size=None, **workers(num_workers)))
    assert keys_of(samples) == core_keys(ds, 3, num_workers=max(num_workers, 1))
    assert collections.Counter(keys_of(samples)) == collections.Counter(list(by_key))  # each patch once
    for sample in samples:
        expected = ds[by_key[sample_key(sample)]]
        assert set(sample) == set(expected)
        for name, array in expected.items():
            assert isinstance(sample[name], torch.Tensor)
            np.testing.assert_array_equal(sample[name].numpy(), array)
            assert sample[name].numpy().dtype == np.asarray(array).dtype


def _dtype_dataset(dtype):
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    high = info.max if info is not None else 1
    image = (rng.integers(0, high, (2, 16, 24), dtype=dtype) if info is not None
             else rng.random((2, 16, 24)).astype(dtype))
    labels = rng.random((16, 24)) > 0.5
    coll = ImageCollection({"images": open_image(image, axes="CYX"), "labels": open_image(labels, axes="YX")},
                           spatial_axes="YX")
    return PatchDataset(coll, PatchSampler(8, spatial_axes="YX"), return_positions=True)


@pytest.mark.parametrize("dtype", ["uint16", "float16"])
def test_default_collate_batches_every_key(dtype):
    ds = _dtype_dataset(np.dtype(dtype))
    batches = list(DataLoader(PatchIterableDataset(ds), batch_size=4, **workers(2)))
    assert [b["images"].shape[0] for b in batches] == [3, 3]  # 6 patches, 3 per worker
    batch = batches[0]
    assert batch["images"].shape == (3, 2, 8, 8) and batch["images"].dtype == getattr(torch, dtype)
    assert batch["labels"].shape == (3, 8, 8) and batch["labels"].dtype == torch.bool
    assert batch["position"].shape == (3, 2, 2) and batch["position"].dtype == torch.int64
    assert batch["image_index"].shape == (3,) and batch["image_index"].dtype == torch.int64
    got = torch.cat([b["images"] for b in batches]).numpy()
    np.testing.assert_array_equal(np.sort(got, axis=0), np.sort([ds[i]["images"] for i in range(6)], axis=0))


@pytest.mark.parametrize("dtype", ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32",
                                   "float64", "complex64", "uint16", "uint32", "uint64"])
def test_arrays_become_tensors_of_the_same_dtype_without_a_copy(dtype):
    array = np.arange(12).reshape(3, 4).astype(dtype)
    tensor = _tensors.to_tensors({"a": array})["a"]
    assert tensor.dtype == getattr(torch, dtype)
    assert tensor.data_ptr() == array.ctypes.data  # shares memory
    np.testing.assert_array_equal(tensor.numpy(), array)


def test_numbers_and_containers_become_collatable_tensors():
    converted = _tensors.to_tensors({"i": 3, "f": 0.5, "b": np.bool_(True), "n": np.int16(-2), "s": "name",
                                     "pair": (np.zeros(2, np.uint8), [1, 2])})
    assert converted["i"].dtype == torch.int64 and converted["i"].shape == ()
    assert converted["f"].dtype == torch.float64
    assert converted["b"].dtype == torch.bool and converted["n"].dtype == torch.int16
    assert converted["s"] == "name"
    assert isinstance(converted["pair"], tuple) and converted["pair"][0].dtype == torch.uint8
    assert [int(v) for v in converted["pair"][1]] == [1, 2]


def test_arrays_torch_cannot_share_are_copied_first():
    base = np.arange(6, dtype=">i4")  # big-endian
    read_only = np.arange(6, dtype=np.uint16)
    read_only.flags.writeable = False
    for array in (base, read_only, np.arange(6)[::-1]):
        tensor = _tensors.to_tensors(array)
        np.testing.assert_array_equal(tensor.numpy(), array)


def test_an_array_torch_has_no_dtype_for_is_refused_with_its_key():
    with pytest.raises(TypeError, match=r"sample\['name'\].*dtype <U3"):
        _tensors.to_tensors({"name": np.array(["abc"])})


# -- map-style --------------------------------------------------------------


def test_map_dataset_with_distributed_sampler_covers_the_epoch():
    ds = make_dataset()
    mapped = PatchMapDataset(ds)
    assert len(mapped) == len(ds)
    np.testing.assert_array_equal(mapped[torch.tensor(5)]["images"].numpy(), ds[5]["images"])
    keys = []
    for rank in range(2):
        sampler = DistributedSampler(mapped, num_replicas=2, rank=rank, shuffle=True, seed=0)
        batches = list(DataLoader(mapped, batch_size=5, sampler=sampler, **workers(rank)))
        assert batches[0]["images"].shape == (5, 3, 8, 8)
        keys.append([(int(i), *p[:, 0].tolist()) for b in batches
                     for i, p in zip(b["image_index"], b["position"])])
    assert len(keys[0]) == len(keys[1]) == -(-len(ds) // 2)
    assert set(keys[0]) | set(keys[1]) == {sample_key(ds[i]) for i in range(len(ds))}


# -- epochs, ranks, errors ----------------------------------------------------


def test_set_epoch_changes_the_order_also_in_persistent_workers():
    ds = make_dataset()
    torch_ds = PatchIterableDataset(ds)
    loader = DataLoader(torch_ds, batch_size=None, persistent_workers=True, **workers(2))
    epochs = []
    for epoch in (0, 1):
        torch_ds.set_epoch(epoch)
        epochs.append(keys_of(loader))
        assert epochs[-1] == core_keys(ds, epoch, num_workers=2)
    assert epochs[0] != epochs[1] and sorted(epochs[0]) == sorted(epochs[1])


def test_set_epoch_while_iterating_is_an_error():
    torch_ds = PatchIterableDataset(make_dataset(), epoch=2)
    it = iter(DataLoader(torch_ds, batch_size=None))
    next(it)
    with pytest.raises(RuntimeError, match=r"set_epoch\(3\) called while epoch 2 is being iterated"):
        torch_ds.set_epoch(3)
    del it  # an abandoned epoch no longer blocks
    torch_ds.set_epoch(3)
    assert torch_ds.epoch == 3
    assert keys_of(DataLoader(torch_ds, batch_size=None)) == core_keys(make_dataset(), 3)
    torch_ds.set_epoch(4)  # after a finished epoch


def test_len_is_the_rank_share():
    ds = make_dataset()
    n = len(ds)
    assert n % 2 == 1
    assert len(PatchIterableDataset(ds)) == n
    assert len(PatchIterableDataset(ds, rank=1, world_size=2)) == (n + 1) // 2
    assert len(PatchIterableDataset(ds, rank=1, world_size=2, drop_remainder=True)) == n // 2
    assert len(keys_of(PatchIterableDataset(ds, rank=1, world_size=2, drop_remainder=True))) == n // 2


def test_the_rank_found_in_the_parent_travels_to_spawned_workers(monkeypatch):
    monkeypatch.setattr(_datasets, "_distributed", lambda: (1, 2))
    torch_ds = PatchIterableDataset(make_dataset())
    assert torch_ds._group() == (1, 2)
    copy = pickle.loads(pickle.dumps(torch_ds))
    monkeypatch.setattr(_datasets, "_distributed", lambda: (0, 1))  # as in a spawned worker
    assert copy._group() == (1, 2) and torch_ds._group() == (0, 1)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(rank=0), ZarrsampleError, "rank and world_size must be given together"),
    (dict(rank=2, world_size=2), ZarrsampleError, "rank must be < world_size=2, got 2"),
    (dict(rank=0, world_size=0), ZarrsampleError, "world_size must be >= 1, got 0"),
    (dict(epoch=-1), ZarrsampleError, "epoch must be >= 0, got -1"),
    (dict(epoch=1.0), TypeError, "epoch must be an int"),
    (dict(drop_remainder=1), TypeError, "drop_remainder must be a bool"),
])
def test_bad_parameters_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        PatchIterableDataset(make_dataset(), **kwargs)


def test_a_dataset_that_is_not_a_patch_dataset_is_refused():
    for cls in (PatchIterableDataset, PatchMapDataset):
        with pytest.raises(TypeError, match="dataset must be a zarrsample_core.PatchDataset, got list"):
            cls([1, 2])


def test_a_state_of_another_rank_or_epoch_is_refused():
    ds = make_dataset()
    saved = PatchIterableDataset(ds, rank=0, world_size=2)
    it = iter(saved)
    next(it)
    state = saved.state_dict()
    other_rank = PatchIterableDataset(ds, rank=1, world_size=2)
    other_rank.load_state_dict(state)
    with pytest.raises(ZarrsampleError, match="rank saved 0, now 1"):
        iter(other_rank)
    other_epoch = PatchIterableDataset(ds, epoch=1, rank=0, world_size=2)
    other_epoch.load_state_dict(state)
    with pytest.raises(ZarrsampleError, match=rf"epoch=1 but the state was saved inside epoch 0 "
                                              rf"\(1 of {(len(ds) + 1) // 2} samples\): resume epoch 0 first"):
        iter(other_epoch)
    with pytest.raises(TypeError, match="state_dict must be a mapping"):
        other_epoch.load_state_dict([1, 2])


def test_resume_with_a_plain_dataloader_and_no_workers():
    ds = make_dataset()
    first = PatchIterableDataset(ds, epoch=1)
    assert first.state_dict()["position"] == 0  # before any iteration
    it = iter(DataLoader(first, batch_size=None))
    head = [sample_key(next(it)) for _ in range(5)]
    state = json.loads(json.dumps(first.state_dict()))
    second = PatchIterableDataset(ds, epoch=1)
    second.load_state_dict(state)
    assert second.state_dict() == state
    assert head + keys_of(DataLoader(second, batch_size=None)) == core_keys(ds, 1)


@pytest.mark.parametrize("num_workers, stop", [(0, 7), (2, 0), (2, 9)])
def test_stateful_dataloader_resumes_batches_with_workers(num_workers, stop):
    ds = make_dataset()
    first = PatchIterableDataset(ds, epoch=4)
    loader = StatefulDataLoader(first, batch_size=3, **workers(num_workers))
    it = iter(loader)
    head = [next(it) for _ in range(stop)]
    state = roundtrip(loader.state_dict())
    del it
    second = PatchIterableDataset(ds, epoch=4)
    loader = StatefulDataLoader(second, batch_size=3, **workers(num_workers))
    loader.load_state_dict(state)
    batches = head + list(loader)

    whole = list(StatefulDataLoader(PatchIterableDataset(ds, epoch=4), batch_size=3, **workers(num_workers)))
    assert len(batches) == len(whole)
    for got, expected in zip(batches, whole):
        assert torch.equal(got["position"], expected["position"])
        assert torch.equal(got["images"], expected["images"])
    flat = [(int(i), *p[:, 0].tolist()) for b in batches for i, p in zip(b["image_index"], b["position"])]
    assert sorted(flat) == sorted(core_keys(ds, 4))


def _train(num_workers, *, start_epoch=0, state=None):
    """A training loop over 3 epochs: ``[(epoch, batch keys)]`` and a checkpoint per step."""
    torch_ds = PatchIterableDataset(make_dataset())
    # Persistent workers: one start per loop, and set_epoch must reach them (shared memory).
    loader = StatefulDataLoader(torch_ds, batch_size=4, persistent_workers=num_workers > 0, **workers(num_workers))
    if state is not None:
        loader.load_state_dict(roundtrip(state))
    batches, checkpoints = [], []
    for epoch in range(start_epoch, 3):
        torch_ds.set_epoch(epoch)
        for batch in loader:
            batches.append((epoch, [(int(i), *p[:, 0].tolist())
                                    for i, p in zip(batch["image_index"], batch["position"])]))
            checkpoints.append((len(batches), epoch, loader.state_dict()))
        checkpoints.append((len(batches), epoch + 1, loader.state_dict()))  # after the epoch
    return batches, checkpoints


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_training_loop_resumes_from_any_checkpoint(num_workers):
    whole, checkpoints = _train(num_workers)
    after = {e: next(i for i, c in enumerate(checkpoints) if c[1] == e + 1) for e in (0, 1)}  # loop ends
    picks = {"inside epoch 1": after[1] - 6, "at the last step of epoch 1": after[1] - 1,
             "after the loop of epoch 1": after[1], "after the loop of epoch 0": after[0]}
    assert checkpoints[after[1] - 6][1] == 1
    for label, index in picks.items():
        done, epoch, state = checkpoints[index]
        rest, _ = _train(num_workers, start_epoch=epoch, state=state)
        assert rest == whole[done:], label


# -- storage backends and start methods ---------------------------------------


def _zarr_dataset(tmp_path, backend):
    rng = np.random.default_rng(3)
    path = tmp_path / "image.zarr"
    zarr.create_array(store=str(path), data=rng.integers(0, 4000, (2, 48, 40), dtype=np.uint16),
                      chunks=(2, 16, 16))
    coll = ImageCollection({"images": open_image(str(path), axes="CYX", backend=backend)}, spatial_axes="YX")
    return PatchDataset(coll, PatchSampler(8, spatial_axes="YX"), shuffle=True, seed=5, return_positions=True)


def _check_loader_matches_the_core(ds, loader):
    by_key = {sample_key(ds[i]): i for i in range(len(ds))}
    samples = list(loader)
    assert sorted(keys_of(samples)) == sorted(by_key)
    for sample in samples:
        assert sample["images"].dtype == torch.uint16
        np.testing.assert_array_equal(sample["images"].numpy(), ds[by_key[sample_key(sample)]]["images"])


def test_zarr_backend_with_forked_workers(tmp_path):
    ds = _zarr_dataset(tmp_path, "zarr")
    ds[0]  # the parent reads before forking
    _check_loader_matches_the_core(ds, DataLoader(PatchIterableDataset(ds), batch_size=None, num_workers=2,
                                                       multiprocessing_context="fork", timeout=60))


def test_tensorstore_backend_with_forkserver_workers(tmp_path):
    ds = _zarr_dataset(tmp_path, "tensorstore")
    ds[0]  # the parent reads through tensorstore first
    loader = DataLoader(PatchIterableDataset(ds), batch_size=None, num_workers=2,
                        multiprocessing_context="forkserver", timeout=60)
    _check_loader_matches_the_core(ds, loader)
    # Forked workers cannot use tensorstore after the parent did: a clear error, no abort.
    forked = DataLoader(PatchIterableDataset(ds), batch_size=None, num_workers=1, multiprocessing_context="fork",
                        timeout=60)
    with pytest.raises(ZarrsampleError, match="fork.*forkserver"):
        list(forked)


# -- two DDP ranks --------------------------------------------------------------


def _ddp_train(rank, world_size):
    """Iterate this rank's shard through a DataLoader, training a DDP model."""
    dist = torch.distributed
    torch.manual_seed(rank)  # different initial weights: DDP must synchronise them
    # The rank is discovered: by forked workers (rank 0) from the process group,
    # by forkserver ones (rank 1), which have none, from the parent that pickled
    # the dataset for them.
    context = ("fork", "forkserver")[rank]
    if context == "forkserver":
        multiprocessing.get_context(context).set_forkserver_preload(["torch", "zarrsample_core"])
    torch_ds = PatchIterableDataset(make_dataset(), epoch=1)
    loader = DataLoader(torch_ds, batch_size=4, num_workers=2, multiprocessing_context=context, timeout=30)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Conv2d(3, 1, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    keys, steps = [], 0
    for batch in loader:
        keys += [(int(i), *p[:, 0].tolist()) for i, p in zip(batch["image_index"], batch["position"])]
        loss = model(batch["images"].float() / 255).square().mean()
        optimizer.zero_grad()
        loss.backward()  # gradients all_reduced across ranks
        optimizer.step()
        steps += 1
    total = torch.tensor([steps])
    dist.all_reduce(total)
    weights = float(sum(p.detach().sum() for p in model.parameters()))
    gathered = [None] * world_size
    dist.all_gather_object(gathered, (len(torch_ds), steps, int(total), keys, weights))
    return gathered


def _ddp_rank(rank, world_size, port, out):
    """One rank process: join the group on the parent's store, train, report."""
    dist = torch.distributed
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    timeout = datetime.timedelta(seconds=30)
    store = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=timeout)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world_size, timeout=timeout)
    try:
        gathered = _ddp_train(rank, world_size)
        if rank == 0:
            Path(out).write_text(json.dumps(gathered))
        # Free the DDP model (and the gloo work it holds) before the group:
        # otherwise torch 2.13 aborts at interpreter exit now and then.
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_ddp_ranks_train_on_disjoint_equal_shards(tmp_path):
    out = tmp_path / "ranks.json"
    # The rendezvous store listens here, on a free port the OS picks: no race for it.
    store = torch.distributed.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    context = torch.multiprocessing.start_processes(
        _ddp_rank, args=(2, store.port, str(out)), nprocs=2, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + 60
    try:
        while not context.join(timeout=max(0.1, deadline - time.monotonic())):
            if time.monotonic() > deadline:
                pytest.fail("the DDP ranks did not finish within 60 s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    ranks = json.loads(out.read_text())
    ds = make_dataset()
    lengths, steps, totals, keys, weights = zip(*ranks)
    per_rank = -(-len(ds) // 2)
    assert lengths == (per_rank, per_rank) and steps[0] == steps[1] and totals == (2 * steps[0],) * 2
    assert weights[0] == pytest.approx(weights[1])  # the ranks trained one model
    for rank in range(2):
        assert sorted(map(tuple, keys[rank])) == sorted(core_keys(ds, 1, rank=rank, world_size=2))
    every = collections.Counter(map(tuple, keys[0] + keys[1]))
    assert set(every) == {sample_key(ds[i]) for i in range(len(ds))}  # the shards cover the epoch
    assert sum(every.values()) - len(every) == 2 * per_rank - len(ds)  # overlap only by the padding


# -- packaging ------------------------------------------------------------------


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_import_does_not_import_torch():
    result = _run(
        "import sys, zarrsample_torch\n"
        "assert 'torch' not in sys.modules, 'torch imported eagerly'\n"
        "zarrsample_torch.PatchIterableDataset\n"
        "assert 'torch' in sys.modules\n"
    )
    assert result.returncode == 0, result.stderr


def test_a_missing_torch_gives_an_install_hint():
    result = _run(
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "import zarrsample_torch\n"
        "try:\n"
        "    zarrsample_torch.PatchMapDataset\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    assert result.returncode == 0, result.stderr
    assert 'pip install "zarrsample[torch]"' in result.stdout
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        zarrsample_torch.Nope  # noqa: B018


def test_public_names_and_docstring_examples():
    assert zarrsample_torch.__all__ == sorted(zarrsample_torch.__all__) == ["PatchIterableDataset", "PatchMapDataset"]
    assert set(zarrsample_torch.__all__) <= set(dir(zarrsample_torch))
    for module in (zarrsample_torch, _datasets, _tensors):
        failed, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert failed == 0, module.__name__
    assert doctest.testmod(_datasets).attempted >= 8


# -- batches from the core ----------------------------------------------------


@pytest.mark.parametrize("num_workers", [0, 2])
def test_iterable_batches_equal_the_core_batches_per_worker(num_workers):
    ds = make_dataset()
    torch_ds = PatchIterableDataset(ds, epoch=2, batch_size=4)
    batches = list(DataLoader(torch_ds, batch_size=None, **workers(num_workers)))
    n = max(num_workers, 1)
    parts = [list(ds.epoch(2, worker=w, num_workers=n).batches(4)) for w in range(n)]
    expected = [b for group in itertools.zip_longest(*parts) for b in group if b is not None]
    assert len(batches) == len(expected)
    if num_workers == 0:
        assert len(torch_ds) == len(batches)
    for got, want in zip(batches, expected):
        assert set(got) == set(want)
        for key, value in want.items():
            assert isinstance(got[key], torch.Tensor)
            np.testing.assert_array_equal(got[key].numpy(), value)


def test_iterable_batches_resume_from_the_loader_state():
    ds = make_dataset()
    loader = StatefulDataLoader(PatchIterableDataset(ds, batch_size=5), batch_size=None)
    it = iter(loader)
    head = [next(it), next(it)]
    state = roundtrip(loader.state_dict())
    loader = StatefulDataLoader(PatchIterableDataset(ds, batch_size=5), batch_size=None)
    loader.load_state_dict(state)
    keys = [sample_key({k: v[j] for k, v in b.items()}) for b in head + list(loader)
            for j in range(len(b["image_index"]))]
    assert keys == keys_of(ds.epoch(0))


def test_map_dataset_reads_a_batch_for_a_list_of_indices():
    from torch.utils.data import BatchSampler, SequentialSampler

    ds = make_dataset()
    map_ds = PatchMapDataset(ds)
    indices = [5, 0, 17, 5]
    batch = map_ds[indices]
    np.testing.assert_array_equal(batch["images"].numpy(), np.stack([ds[i]["images"] for i in indices]))
    assert batch["position"].shape == (4, 2, 2)
    sampler = BatchSampler(SequentialSampler(map_ds), 8, drop_last=False)
    by_sampler = list(DataLoader(map_ds, sampler=sampler, batch_size=None))
    by_getitems = list(DataLoader(map_ds, batch_size=8))
    assert len(by_sampler) == len(by_getitems) == -(-len(ds) // 8)
    for a, b, start in zip(by_sampler, by_getitems, range(0, len(ds), 8)):
        want = np.stack([ds[i]["labels"] for i in range(start, min(len(ds), start + 8))])
        np.testing.assert_array_equal(a["labels"].numpy(), want)
        np.testing.assert_array_equal(b["labels"].numpy(), want)


def test_batch_size_and_drop_last_are_checked():
    ds = make_dataset()
    with pytest.raises(ZarrsampleError, match="batch_size"):
        PatchIterableDataset(ds, batch_size=0)
    with pytest.raises(TypeError, match="drop_last"):
        PatchIterableDataset(ds, batch_size=2, drop_last=1)
    assert len(PatchIterableDataset(ds, batch_size=4, drop_last=True)) == len(ds) // 4
