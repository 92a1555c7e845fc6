"""Fast, pure unit tests (no subprocesses, no training) for the engine's small building blocks:
the lr schedules, the training/evaluation samplers and the metric helpers.

Every expected number below is worked out by hand in the test, never by calling the code
under test a second time.
"""

import math

import pytest
import torch

from classify.data.samplers import EvalSampler, TrainSampler
from classify.metrics import Meter, accuracy_counts, format_eta, warmup_steps
from classify.schedules import SCHEDULES, build_scheduler, lr_factor

COS_QUARTER = 0.5 * (1 + math.cos(math.pi / 4))  # cosine factor a quarter of the way: 0.8536
COS_THIRD = 0.5 * (1 + math.cos(math.pi / 3))  # a third of the way: 0.75


# --------------------------------------------------------------------------- lr_factor


def test_schedule_names():
    # a new schedule should get its own tests here
    # torchvision's names have theirs in tests/test_torchvision_flags.py
    assert set(SCHEDULES) == {"cosine", "step", "exponential", "constant", "linear", "steplr", "cosineannealinglr",
                              "exponentiallr"}


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("epoch, expected", [
    (0.0, 0.001 / 2),      # start: (0 + 1e-3) / 2, never exactly 0
    (0.5, 0.501 / 2),
    (1.0, 1.001 / 2),      # mid warm-up
    (1.999, 1.0),          # last instant of warm-up: (1.999 + 1e-3) / 2
    (2.0, 1.0),            # end of warm-up: every schedule starts at its full lr
])
def test_linear_warmup(name, epoch, expected):
    assert lr_factor(name, epoch, 10, warmup_epochs=2.0) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("epoch, expected", [
    (0.0, 1.0), (2.5, COS_QUARTER), (5.0, 0.5), (7.5, 1 - COS_QUARTER), (10.0, 0.0),
    (12.0, 0.0),  # past the end: stays at 0
])
def test_cosine(epoch, expected):
    assert lr_factor("cosine", epoch, 10) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("epoch, expected", [
    (2.0, 1.0), (4.0, COS_QUARTER), (6.0, 0.5), (8.0, 1 - COS_QUARTER), (10.0, 0.0),
])
def test_cosine_after_warmup_spans_the_rest(epoch, expected):
    # warm-up 2 of 10 epochs: the half-cosine runs over epochs 2..10 (span 8)
    assert lr_factor("cosine", epoch, 10, warmup_epochs=2.0) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("epoch, expected", [
    (0.0, 1.0), (29.99, 1.0), (30.0, 0.1), (59.0, 0.1), (60.0, 0.01), (89.5, 0.01), (90.0, 0.001),
])
def test_step_every_30_epochs(epoch, expected):
    assert lr_factor("step", epoch, 100) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("epoch, expected", [
    (0.0, 1.0), (4.0, 1.0), (5.0, 0.5), (9.9, 0.5), (10.0, 0.25), (14.0, 0.25), (15.0, 0.125),
])
def test_step_custom_step_and_gamma(epoch, expected):
    assert lr_factor("step", epoch, 20, step=5, gamma=0.5) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("epoch, expected", [
    (0.0, 1.0), (9.9, 1.0), (10.0, 0.5), (24.0, 0.5), (25.0, 0.25), (39.0, 0.25),
])
def test_step_milestones_override_step(epoch, expected):
    # with milestones, ``step`` (here 3) plays no part
    assert lr_factor("step", epoch, 40, milestones=(10, 25), step=3, gamma=0.5) == \
        pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("epoch, expected", [
    (0.0, 1.0), (69.0, 1.0), (69.99, 1.0), (70.0, 0.3), (139.0, 0.3), (140.0, 0.09),
    (209.0, 0.09), (210.0, 0.027), (280.0, 0.0081), (299.0, 0.0081),
])
def test_exponential_mindspore_googlenet(epoch, expected):
    factor = lr_factor("exponential", epoch, 300, milestones=(70, 140, 210, 280), gamma=0.3)
    assert factor == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("epoch", [0.0, 0.5, 50.0, 99.0, 100.0])
def test_constant(epoch):
    assert lr_factor("constant", epoch, 100) == 1.0


# --------------------------------------------------------------------------- build_scheduler

STEPS_PER_EPOCH, BASE_LR = 4, 0.2


@pytest.mark.parametrize("name, kwargs, factors", [
    # factors at the start of epochs 0..4 of a 4-epoch run
    ("cosine", {}, [1.0, COS_QUARTER, 0.5, 1 - COS_QUARTER, 0.0]),
    ("cosine", {"warmup_epochs": 1.0}, [0.001, 1.0, COS_THIRD, 1 - COS_THIRD, 0.0]),
    ("step", {"step": 2, "gamma": 0.5}, [1.0, 1.0, 0.5, 0.5, 0.25]),
    ("step", {"milestones": (1, 3), "gamma": 0.1}, [1.0, 0.1, 0.1, 0.01, 0.01]),
    ("exponential", {"milestones": (1, 3), "gamma": 0.3}, [1.0, 0.3, 0.3, 0.09, 0.09]),
    ("exponential", {"milestones": (2,), "gamma": 0.3, "warmup_epochs": 1.0}, [0.001, 1.0, 0.3, 0.3, 0.3]),
    ("constant", {}, [1.0] * 5),
    ("constant", {"warmup_epochs": 1.0}, [0.001, 1.0, 1.0, 1.0, 1.0]),
])
def test_build_scheduler_steps_per_iteration(name, kwargs, factors):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE_LR)
    scheduler = build_scheduler(optimizer, name=name, epochs=4, steps_per_epoch=STEPS_PER_EPOCH, **kwargs)
    seen = [optimizer.param_groups[0]["lr"]]
    for it in range(1, 4 * STEPS_PER_EPOCH + 1):
        optimizer.step()  # no gradients: a no-op, but keeps the step order torch expects
        scheduler.step()
        if it % STEPS_PER_EPOCH == 0:
            seen.append(optimizer.param_groups[0]["lr"])
    assert seen == pytest.approx([BASE_LR * f for f in factors], rel=1e-9, abs=1e-15)
    for k, lr in enumerate(seen):  # and it is the same function as lr_factor
        assert lr == pytest.approx(BASE_LR * lr_factor(name, float(k), 4, **kwargs), rel=1e-12, abs=1e-15)


def test_build_scheduler_moves_within_an_epoch():
    # linear warm-up over 1 epoch of 4 steps: the lr moves every iteration, not every epoch
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE_LR)
    scheduler = build_scheduler(optimizer, name="constant", epochs=4, steps_per_epoch=STEPS_PER_EPOCH,
                                warmup_epochs=1.0)
    seen = [optimizer.param_groups[0]["lr"]]
    for _ in range(STEPS_PER_EPOCH):
        optimizer.step()
        scheduler.step()
        seen.append(optimizer.param_groups[0]["lr"])
    expected = [0.001, 0.251, 0.501, 0.751, 1.0]
    assert seen == pytest.approx([BASE_LR * f for f in expected], rel=1e-9)


# --------------------------------------------------------------------------- TrainSampler


def shards(size, world_size, seed=0, epoch=0):
    out = []
    for rank in range(world_size):
        sampler = TrainSampler(size, rank, world_size, seed)
        sampler.set_epoch(epoch)
        out.append(list(sampler))
    return out


def indices(pairs):
    return [i for i, _ in pairs]


def seeds(pairs):
    return [s for _, s in pairs]


@pytest.mark.parametrize("size, world_size, per_rank", [
    (10, 1, 10), (10, 2, 5), (10, 3, 4), (10, 4, 3), (7, 7, 1), (101, 8, 13),
])
def test_train_sampler_lengths_and_cover(size, world_size, per_rank):
    parts = shards(size, world_size)
    for rank, part in enumerate(parts):
        assert len(TrainSampler(size, rank, world_size, 0)) == per_rank
        assert len(part) == per_rank
        for index, seed in part:
            assert isinstance(index, int) and isinstance(seed, int)
            assert 0 <= index < size
    every = [i for part in parts for i in indices(part)]
    assert set(every) == set(range(size))
    padding = per_rank * world_size - size
    duplicated = [i for i in set(every) if every.count(i) > 1]
    assert len(every) == size + padding and len(duplicated) == padding
    assert all(every.count(i) <= 2 for i in duplicated)


@pytest.mark.parametrize("size, world_size", [(10, 3), (10, 4), (101, 8)])
def test_train_sampler_pads_from_the_start_of_the_permutation(size, world_size):
    # rank r holds positions r, r+W, r+2W, ... of one padded permutation
    parts = shards(size, world_size, seed=3, epoch=1)
    per_rank = len(parts[0])
    order = [parts[p % world_size][p // world_size][0] for p in range(per_rank * world_size)]
    assert sorted(order[:size]) == list(range(size))
    assert order[size:] == order[: per_rank * world_size - size]


def test_train_sampler_shuffles():
    size = 50
    order = indices(shards(size, 1)[0])
    assert sorted(order) == list(range(size)) and order != list(range(size))
    assert indices(shards(size, 1, seed=1)[0]) != order  # another seed, another order


def test_train_sampler_set_epoch_is_deterministic():
    e0, e1 = shards(40, 2, seed=5, epoch=0), shards(40, 2, seed=5, epoch=1)
    assert shards(40, 2, seed=5, epoch=0) == e0  # a fresh sampler, same seed + epoch
    assert shards(40, 2, seed=5, epoch=1) == e1
    for rank in range(2):
        assert indices(e0[rank]) != indices(e1[rank])
        assert set(seeds(e0[rank])).isdisjoint(seeds(e1[rank]))  # new augmentation each epoch
    # the same sampler object, moved back and forth between epochs
    sampler = TrainSampler(40, 1, 2, seed=5)
    sampler.set_epoch(1)
    assert list(sampler) == e1[1]
    sampler.set_epoch(0)
    assert list(sampler) == e0[1]


def test_train_sampler_sample_seeds():
    size, world_size = 30, 4  # padded: 32 positions
    parts = shards(size, world_size, seed=2, epoch=3)
    every = [s for part in parts for s in seeds(part)]
    assert len(set(every)) == len(every) == 32  # one seed per position, padding included
    assert all(0 <= s < 2**63 for s in every)
    assert shards(size, world_size, seed=2, epoch=3) == parts
    assert set(every).isdisjoint(s for part in shards(size, world_size, seed=4, epoch=3) for s in seeds(part))


@pytest.mark.parametrize("size, world_size, rank, n", [
    (20, 1, 0, 0), (20, 1, 0, 7), (20, 1, 0, 19), (20, 1, 0, 20),
    (23, 4, 0, 2), (23, 4, 3, 5), (23, 4, 2, 6),
])
def test_train_sampler_skip(size, world_size, rank, n):
    sampler = TrainSampler(size, rank, world_size, seed=9)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.skip(n)
    assert len(sampler) == len(full) - n
    assert list(sampler) == full[n:]  # same indices and same per-sample seeds
    resumed = TrainSampler(size, rank, world_size, seed=9)  # a fresh one, as after a restart
    resumed.set_epoch(2)
    resumed.skip(n)
    assert list(resumed) == full[n:]


def test_train_sampler_set_epoch_resets_skip():
    sampler = TrainSampler(23, 1, 4, seed=9)
    sampler.set_epoch(3)
    full = list(sampler)
    sampler.set_epoch(2)
    sampler.skip(4)
    sampler.set_epoch(3)
    assert len(sampler) == 6
    assert list(sampler) == full


# --------------------------------------------------------------------------- EvalSampler


@pytest.mark.parametrize("size, world_size", [
    (10, 1), (10, 2), (10, 3), (10, 4), (7, 7), (8, 7), (101, 8), (50000, 8),
])
def test_eval_sampler_exact_cover(size, world_size):
    parts = [list(EvalSampler(size, rank, world_size)) for rank in range(world_size)]
    for rank, part in enumerate(parts):
        assert len(EvalSampler(size, rank, world_size)) == len(part)
    every = [i for part in parts for i in part]
    assert len(every) == size  # no padding
    assert sorted(every) == list(range(size))  # disjoint, each index once


@pytest.mark.parametrize("size, world_size, lengths", [
    (10, 3, [4, 3, 3]), (10, 4, [3, 3, 2, 2]), (8, 7, [2, 1, 1, 1, 1, 1, 1]), (6, 3, [2, 2, 2]),
])
def test_eval_sampler_lengths(size, world_size, lengths):
    assert [len(EvalSampler(size, r, world_size)) for r in range(world_size)] == lengths


# --------------------------------------------------------------------------- Meter

CPU = torch.device("cpu")


def test_meter_window_and_totals():
    meter = Meter(["loss", "top1"], CPU)
    meter.update(torch.tensor([2.0, 3.0]), 4)  # a batch of 4: loss sum 2, 3 correct
    meter.update(torch.tensor([1.0, 1.0]), 2)
    window = meter.read_window()
    assert window == pytest.approx({"loss": 0.5, "top1": 4 / 6, "count": 6})
    meter.update(torch.tensor([6.0, 0.0]), 4)
    assert meter.read_window() == pytest.approx({"loss": 1.5, "top1": 0.0, "count": 4})
    expected = {"loss": 9 / 10, "top1": 4 / 10, "count": 10}
    assert meter.averages() == pytest.approx(expected)
    assert meter.averages(reduce=True) == pytest.approx(expected)  # no process group: the same
    assert meter.averages() == pytest.approx(expected)  # reading the totals changes nothing


def test_meter_empty_window_is_nan():
    meter = Meter(["loss", "top1"], CPU)
    meter.update(torch.tensor([3.0, 1.0]), 3)
    meter.read_window()
    window = meter.read_window()  # nothing since the last read
    assert window["count"] == 0
    assert math.isnan(window["loss"]) and math.isnan(window["top1"])
    assert meter.averages() == pytest.approx({"loss": 1.0, "top1": 1 / 3, "count": 3})


def test_meter_without_updates_is_nan():
    meter = Meter(["loss", "top1", "top5"], CPU)
    averages = meter.averages()
    assert set(averages) == {"loss", "top1", "top5", "count"}
    assert averages["count"] == 0
    assert all(math.isnan(averages[n]) for n in ("loss", "top1", "top5"))
    window = meter.read_window()
    assert window["count"] == 0 and math.isnan(window["loss"])


def test_meter_averages_does_not_reset_window():
    meter = Meter(["loss"], CPU)
    meter.update(torch.tensor([5.0]), 2)
    assert meter.averages() == pytest.approx({"loss": 2.5, "count": 2})
    assert meter.read_window() == pytest.approx({"loss": 2.5, "count": 2})


# --------------------------------------------------------------------------- accuracy_counts

# 3 samples x 6 classes, all logits distinct in each row
LOGITS = torch.tensor([
    [0.1, 0.9, 0.3, 0.2, 0.5, 0.4],   # target 1: the largest      -> top-1 and top-5
    [0.6, 0.1, 0.9, 0.2, 0.8, 0.3],   # target 0: third largest    -> top-5 only (and top-3)
    [0.3, 0.6, 0.5, 0.7, 0.4, 0.2],   # target 5: the smallest (6th) -> neither
])
TARGET = torch.tensor([1, 0, 5])


@pytest.mark.parametrize("topk, expected", [
    ((1, 5), [1.0, 2.0]), ((1,), [1.0]), ((2, 3), [1.0, 2.0]), ((1, 6), [1.0, 3.0]),
])
def test_accuracy_counts(topk, expected):
    counts = accuracy_counts(LOGITS, TARGET, topk=topk)
    assert counts.dtype.is_floating_point
    assert counts.tolist() == expected


def test_accuracy_counts_default_topk():
    assert accuracy_counts(LOGITS, TARGET).tolist() == [1.0, 2.0]


def test_accuracy_counts_fewer_classes_than_k():
    # 3 classes: top-5 is clamped to top-3, so every sample counts as correct
    logits = torch.tensor([[0.2, 0.7, 0.1], [0.9, 0.05, 0.05], [0.1, 0.2, 0.7], [0.5, 0.4, 0.1]])
    target = torch.tensor([1, 2, 0, 0])
    assert accuracy_counts(logits, target, topk=(1, 5)).tolist() == [2.0, 4.0]


def test_accuracy_counts_ties_elsewhere():
    # ties among the other classes cannot change these answers
    logits = torch.tensor([
        [5.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],  # target 0 is the unique max
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0],  # target 6 is the unique min of 7: outside any top-5
        [1.0, 1.0, 1.0, 1.0, 1.0, 3.0, 2.0],  # target 6 is the unique second: top-5, not top-1
    ])
    target = torch.tensor([0, 6, 6])
    assert accuracy_counts(logits, target, topk=(1, 5)).tolist() == [1.0, 2.0]


# --------------------------------------------------------------------------- warmup_steps, format_eta


@pytest.mark.parametrize("steps_per_epoch, expected", [
    (0, 0), (1, 0), (2, 1), (5, 1), (9, 1), (10, 2), (24, 4), (50, 10), (51, 10), (1000, 10),
])
def test_warmup_steps(steps_per_epoch, expected):
    assert warmup_steps(steps_per_epoch) == expected


@pytest.mark.parametrize("seconds, expected", [
    (None, "-"), (float("nan"), "-"), (-1.0, "-"),
    (0, "0:00:00"), (0.9, "0:00:00"), (59.99, "0:00:59"), (61, "0:01:01"),
    (3661.5, "1:01:01"), (90000, "1 day, 1:00:00"),
])
def test_format_eta(seconds, expected):
    assert format_eta(seconds) == expected
