"""The levers beyond the seed recipes (docs/recipes.md, "Levers"): each one against a
hand-computed or big-batch reference, and a crash + ``--resume auto`` bit-identical with it on."""

import copy
import dataclasses

import pytest
import torch

import main
import models
from classify.checkpoint import load_checkpoint
from classify.schema import OptimConfig
from classify.loop import EpochPlan, Micro, train_one_epoch
from classify.parts import build_train_parts
from classify.amp import AmpSettings
from classify.transforms import Normalize
from tests import tinynet

OFF = AmpSettings(False, None, None)


def optim_config(**kw) -> OptimConfig:
    base = dict(epochs=1, start_epoch=0, batch_size=16, per_device_batch=16, lr=0.1, momentum=0.9,
                weight_decay=1e-4, label_smoothing=0.0, lr_scheduler="constant", lr_epochs=(), lr_step=30,
                lr_gamma=0.1, warmup_epochs=0.0)
    return OptimConfig(**{**base, **kw})


def parts_for(model, levers=None, steps_per_epoch=1, **optim):
    return build_train_parts(model, arch="tinynet", optim=optim_config(**optim), steps_per_epoch=steps_per_epoch,
                             device=torch.device("cpu"), amp=OFF, normalize=Normalize((0.5,) * 3, (0.25,) * 3),
                             levers=levers, num_classes=4)


def run_epoch(parts, batches, tmp_path):
    plan = EpochPlan(epoch=0, steps_per_epoch=len(batches), print_freq=100)
    return train_one_epoch(parts, [(x, y, 0) for x, y in batches], plan)


def batch(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=g), torch.randint(0, 4, (n,), generator=g)


def lever_config(**kw):
    from classify.schema import LeverConfig

    return LeverConfig(**kw)


# ----------------------------------------------------------------------------- gradient accumulation


def test_accumulation_equals_one_big_batch(tmp_path):
    torch.manual_seed(0)
    net = tinynet.build_flat(4)  # no BatchNorm, no dropout: 4 x 4 images are exactly one batch of 16
    big, small = copy.deepcopy(net), copy.deepcopy(net)
    images, target = batch(16)
    run_epoch(parts_for(big), [(images, target)], tmp_path)
    accum = parts_for(small, lever_config(grad_accum_steps=4), steps_per_epoch=4)
    run_epoch(accum, list(zip(images.split(4), target.split(4))), tmp_path)
    assert accum.scheduler.last_epoch == 1  # one optimizer step for the four batches
    for a, b in zip(big.parameters(), small.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    moved = max((a - b).abs().max().item() for a, b in zip(net.parameters(), small.parameters()))
    assert moved > 1e-3  # the step did something


def test_accumulation_groups_and_the_epoch_tail():
    groups = [Micro.at(s, 4, pass_start=0, pass_end=10) for s in range(10)]
    assert [g.size for g in groups] == [4] * 8 + [2, 2] and [s for s, g in enumerate(groups) if g.last] == [3, 7, 9]
    resumed = Micro.at(5, 4, pass_start=4, pass_end=10)
    assert (resumed.start, resumed.first, resumed.last, resumed.size) == (4, False, False, 4)


def test_optimizer_batch_size_and_its_errors(image_folder, tmp_path, capsys):
    from classify.resolve import build_config

    parse = main.get_args_parser().parse_args
    cfg = build_config(parse([str(image_folder), "-a", "tinynet", "-b", "8", "--optimizer-batch-size", "32"]))
    assert cfg.levers.grad_accum_steps == 4 and cfg.optim.lr == pytest.approx(0.05 * 32 / 8)  # lr follows 32
    assert main.main([str(image_folder), "-a", "tinynet", "-b", "8", "--optimizer-batch-size", "20",
                      "--output-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --optimizer-batch-size 20 is not a multiple of the global batch 8 (batch per device x devices); "
        "pass a multiple of it or change -b"]


# ----------------------------------------------------------------------------- resume with each lever


def crash_and_resume(image_folder, tmp_path, request, flags, *, crash_at=6):
    """Train an epoch straight; train again, checkpointing every 2 steps, and die (no save, as
    after SIGKILL) at the ``crash_at``-th forward; ``--resume auto``. Returns both runs' final
    checkpoints and the one the crashed run left."""
    args = [str(image_folder), "-a", "tinynet", "-b", "4", "--workers", "0", "--epochs", "1", "-p", "3", *flags]
    assert main.main([*args, "--output-dir", str(tmp_path / "straight")]) == 0
    entry, calls = models.get_model_entry("tinynet"), {"n": 0}

    def crash(*a):
        calls["n"] += 1
        if calls["n"] == crash_at:
            raise KeyboardInterrupt  # main.py returns 130 without saving anything
        return entry.loss(*a)

    models.register_model(dataclasses.replace(entry, loss=crash))
    request.addfinalizer(lambda: models.register_model(entry))
    killed = str(tmp_path / "killed")
    assert main.main([*args, "--output-dir", killed, "--ckpt-interval", "2"]) == 130
    left = load_checkpoint(tmp_path / "killed" / "checkpoint.pth.tar")
    models.register_model(entry)
    assert main.main([*args, "--output-dir", killed, "--resume", "auto"]) == 0
    return (load_checkpoint(tmp_path / "straight" / "checkpoint.pth.tar"),
            load_checkpoint(tmp_path / "killed" / "checkpoint.pth.tar"), left)


def assert_same(a, b):
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_accumulation_is_bit_identical(image_folder, tmp_path, request, capsys):
    # 36 images, batch 4: 9 steps an epoch, groups of 3 steps; the crash comes at step 5
    straight, resumed, left = crash_and_resume(image_folder, tmp_path, request, ["--grad-accum-steps", "3"])
    assert "x 3 accumulation steps = effective batch 12" in capsys.readouterr().out
    assert (left["epoch"], left["step"]) == (0, 3)  # saved only between optimizer steps
    assert_same(straight["state_dict"], resumed["state_dict"])
    assert straight["lr_scheduler"]["last_epoch"] == 3  # 3 optimizer steps an epoch


# ----------------------------------------------------------------------------- gradient clipping


@pytest.mark.parametrize("scaled", [False, True])
def test_clip_grad_norm_unscales_then_clips_then_steps(scaled):
    from classify.loop import train_step

    torch.manual_seed(0)
    net = tinynet.build_flat(4)
    before = [p.detach().clone() for p in net.parameters()]
    parts = parts_for(net, lever_config(clip_grad_norm=0.01), lr=1.0, momentum=0.0, weight_decay=0.0)
    if scaled:  # what fp16 AMP trains with: clipping the scaled gradients would clip to 0.01 / 1024
        parts.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    images, target = batch(8)
    assert train_step(parts, images.float() * 10, target)
    moved = torch.cat([(p.detach() - b).flatten() for p, b in zip(net.parameters(), before)])
    assert moved.norm().item() == pytest.approx(0.01, rel=1e-4)  # lr 1, no momentum: the step is the gradient


# ----------------------------------------------------------------------------- weight EMA


def test_ema_matches_a_hand_computed_update():
    from classify.ema import ModelEma, adjusted_decay

    torch.manual_seed(0)
    net = tinynet.build(4)
    ema = ModelEma(net, decay=0.9, every=2)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
        net[1].running_mean.add_(2.0)
    ema.after_step(net, 1)  # not an update step
    assert not torch.equal(ema.module[0].weight, net[0].weight)
    ema.after_step(net, 2)  # the first update copies (torchvision's AveragedModel)
    first = {k: v.clone() for k, v in ema.module.state_dict().items()}
    assert torch.equal(first["0.weight"], net[0].weight)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)
        net[1].running_mean.mul_(3.0)
    ema.after_step(net, 4)
    for key, value in net.state_dict().items():  # parameters and buffers: 0.9 * ema + 0.1 * weights
        if value.is_floating_point():
            torch.testing.assert_close(ema.module.state_dict()[key], 0.9 * first[key] + 0.1 * value)
    assert int(ema.n_averaged) == 2
    warm = ModelEma(net, decay=0.9999, every=1, decay_warmup=True)  # timm: decay_t = 1 - (1 + t) ** -2/3
    start = warm.module[0].weight.detach().clone()
    warm.after_step(net, 1)
    with torch.no_grad():
        net[0].weight.add_(1.0)
    warm.after_step(net, 2)
    torch.testing.assert_close(warm.module[0].weight, start + 2 ** (-2 / 3) * (net[0].weight - start))
    # torchvision: alpha = (1 - decay) * world_size * batch_size * model_ema_steps / epochs
    assert adjusted_decay(0.99998, global_batch=1024, every=32, epochs=600) == pytest.approx(1 - 2e-5 * 1024 * 32 / 600)


def test_resume_with_ema_mixup_cutmix_and_the_ra_sampler_is_bit_identical(image_folder, tmp_path, request, capsys):
    """The stateful levers together (one crash and resume for all: each run costs seconds)."""
    import json

    flags = ["--model-ema", "--model-ema-steps", "2", "--model-ema-decay", "0.999",
             "--mixup", "0.2", "--cutmix", "1.0", "--label-smoothing", "0.1", "--aug-repeats", "3"]
    straight, resumed, left = crash_and_resume(image_folder, tmp_path, request, flags)
    log = capsys.readouterr().out
    assert log.count(" * EMA Acc@1 ") == 2  # straight, resumed
    assert left["step"] == 4 and left["ema_updates"] == 2  # 4 optimizer steps, every 2nd an update
    assert_same(straight["state_dict"], resumed["state_dict"])
    assert_same(straight["state_dict_ema"], resumed["state_dict_ema"])
    assert straight["args"]["ra_sampler"] is True and straight["args"]["ra_reps"] == 3
    assert straight["ema_updates"] == 4 and not torch.equal(straight["state_dict"]["0.weight"],
                                                             straight["state_dict_ema"]["0.weight"])
    out = tmp_path / "straight"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all({"ema_acc1", "ema_acc5", "ema_val_loss"} <= set(r) for r in records)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_acc1"] == max(max(r["acc1"], r["ema_acc1"]) for r in records)
    assert {"final_ema_acc1", "final_ema_acc5", "best_is_ema"} <= set(summary)

    from classify.inference import load_trained_model

    net = load_trained_model(out / "checkpoint.pth.tar", ema=True)
    assert torch.equal(net.model.state_dict()["0.weight"], straight["state_dict_ema"]["0.weight"])
    from tools import predict

    image = next((image_folder / "val" / "red").iterdir())
    capsys.readouterr()
    assert predict.main(["--checkpoint", str(out / "model_best.pth.tar"), "--ema", "--device", "cpu", str(image)]) == 0
    assert capsys.readouterr().out.startswith(f"{image}: ")
    torch.save({"state_dict": straight["state_dict"]}, tmp_path / "plain.pth")
    assert predict.main(["--checkpoint", str(tmp_path / "plain.pth"), "-a", "tinynet", "--ema", str(image)]) == 2
    assert "holds no EMA weights (state_dict_ema)" in capsys.readouterr().err
    assert main.main([str(image_folder), "-a", "tinynet", "--model-ema-steps", "4"]) == 2
    assert "need --model-ema" in capsys.readouterr().err


# ----------------------------------------------------------------------------- mixup / cutmix


def test_mixup_loss_on_a_known_batch():
    import torch.nn.functional as F

    from classify.loop import train_step
    from classify.metrics import Meter, accuracy_counts

    torch.manual_seed(0)
    net = tinynet.build_flat(4).eval()  # eval: the same forward twice (the check recomputes it)
    parts = parts_for(net, lever_config(mixup_alpha=0.4), label_smoothing=0.1, lr=1e-9)
    seen = {}
    net.register_forward_hook(lambda m, inp, out: seen.update(x=inp[0].detach(), out=out.detach()))
    loss_fn = parts.loss_fn
    parts.loss_fn = lambda crit, out, target: seen.update(target=target) or loss_fn(crit, out, target)
    images = torch.stack([torch.full((3, 8, 8), v, dtype=torch.uint8) for v in (0, 100, 200, 250)])
    target = torch.tensor([0, 1, 2, 3])
    meter = Meter(["loss", "acc1", "acc5"], torch.device("cpu"))
    assert train_step(parts, images, target, meter=meter, n=4)
    x = parts.normalize(images)
    lam = ((seen["x"][0, 0, 0, 0] - x[3, 0, 0, 0]) / (x[0, 0, 0, 0] - x[3, 0, 0, 0])).item()  # x0 mixed with x3
    assert 0 < lam < 1
    torch.testing.assert_close(seen["x"], lam * x + (1 - lam) * x.roll(1, 0))
    hard, rolled = F.one_hot(target, 4).float(), F.one_hot(target.roll(1), 4).float()
    torch.testing.assert_close(seen["target"], lam * hard + (1 - lam) * rolled)
    out = seen["out"]
    expected = lam * F.cross_entropy(out, target, label_smoothing=0.1) + (1 - lam) * F.cross_entropy(
        out, target.roll(1), label_smoothing=0.1)
    assert meter.total[0].item() / 4 == pytest.approx(expected.item(), rel=1e-5)  # label smoothing composes
    assert meter.total[1].item() == accuracy_counts(out, target)[0].item() * 100  # accuracy on the hard labels


def test_cutmix_and_mixup_switch(tmp_path):
    from classify.transforms import batch_mix

    mix = batch_mix(mixup_alpha=0.2, cutmix_alpha=1.0, switch_prob=1.0, num_classes=4)
    images = torch.stack([torch.full((3, 16, 16), float(v)) for v in range(4)])
    torch.manual_seed(1)
    out, soft = mix(images, torch.arange(4))
    values = out[0].unique()  # CutMix pastes a box of image 3 into image 0: exactly two values
    assert set(values.tolist()) == {0.0, 3.0}
    assert soft[0, 0].item() == pytest.approx((out[0] == 0).float().mean().item())
    assert batch_mix(mixup_alpha=0.0, cutmix_alpha=0.0, num_classes=4) is None



# ----------------------------------------------------------------------------- weight decay exclusions


def test_norm_and_bias_weight_decay_groups():
    net = tinynet.build(4)  # conv, BN, conv, BN, linear
    default = parts_for(net).optimizer
    assert len(default.param_groups) == 1 and default.param_groups[0]["weight_decay"] == 1e-4  # as the seeds
    groups = parts_for(net, lever_config(norm_weight_decay=0.0)).optimizer.param_groups
    norm = {id(p) for m in (net[1], net[4]) for p in m.parameters()}
    assert [(g["weight_decay"], {id(p) for p in g["params"]} == norm) for g in groups] == [(1e-4, False), (0.0, True)]
    groups = parts_for(net, lever_config(norm_weight_decay=0.0, bias_weight_decay=1e-5)).optimizer.param_groups
    biases = {id(m.bias) for m in net.modules() if getattr(m, "bias", None) is not None}
    assert {id(p) for p in groups[2]["params"]} == biases and groups[2]["weight_decay"] == 1e-5
    assert {id(p) for p in groups[1]["params"]} == {id(net[1].weight), id(net[4].weight)}
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))


# ----------------------------------------------------------------------------- SyncBN


def test_sync_bn_converts_and_is_a_notice_alone(image_folder, tmp_path, capsys):
    from classify.resolve import build_config
    from classify.parts import sync_batchnorm

    net = tinynet.build(4)
    params = list(net.parameters())
    assert sync_batchnorm(net) is net and list(net.parameters()) == params  # the optimizer's parameters stay
    assert [type(m).__name__ for m in (net[1], net[4])] == ["SyncBatchNorm", "SyncBatchNorm"]
    parts = parts_for(net)
    assert run_epoch(parts, [batch(8)], tmp_path)["steps"] == 1  # trains (no process group: plain BN maths)
    out = train_in(capsys, image_folder, tmp_path / "one", "--sync-bn", "--epochs", "1")
    assert "=> --sync-bn: one process, nothing to synchronise; BatchNorm left as it is" in out
    # 2 gloo processes: torch's DDP refuses SyncBatchNorm on CPU modules, so it is a one-line error
    args = main.get_args_parser().parse_args([str(image_folder), "-a", "tinynet", "--device", "cpu", "--sync-bn"])
    with pytest.raises(Exception, match="--sync-bn has no CPU kernel in torch"):
        build_config(args, world_size=2, local_world=2)


def train_in(capsys, data, out, *flags):
    from tests.conftest import tiny_args, train_in_process

    return train_in_process(capsys, *tiny_args(data, out, *flags))


# ----------------------------------------------------------------------------- deterministic mode


def test_deterministic_twice_gives_the_same_weights(image_folder, tmp_path, capsys, request):
    def restore(benchmark=torch.backends.cudnn.benchmark, cudnn=torch.backends.cudnn.deterministic):
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = benchmark, cudnn

    request.addfinalizer(restore)
    for i in (0, 1):
        log = train_in(capsys, image_folder, tmp_path / str(i), "--epochs", "1", "--deterministic")
        assert "=> deterministic: torch.use_deterministic_algorithms(True), cudnn.deterministic" in log
        assert torch.are_deterministic_algorithms_enabled()
        restore()
    a, b = (load_checkpoint(tmp_path / str(i) / "checkpoint.pth.tar") for i in (0, 1))
    assert_same(a["state_dict"], b["state_dict"])
    assert a["args"]["deterministic"] is True


# ----------------------------------------------------------------------------- lr warm-up, torchvision spelling


def test_torchvision_warmup_flags_map_onto_the_warmup(image_folder, capsys):
    from classify.resolve import build_config
    from classify.schedules import lr_factor

    def levers(*flags):
        cfg = build_config(main.get_args_parser().parse_args([str(image_folder), "-a", "tinynet", *flags]))
        return cfg.optim.warmup_epochs, cfg.levers.lr_warmup_method, cfg.levers.lr_warmup_decay

    assert levers("--lr-warmup-epochs", "2") == (2.0, "linear", None)  # = --warmup-epochs 2: the seeds' ramp
    assert levers("--lr-warmup-epochs", "2", "--lr-warmup-method", "constant", "--lr-warmup-decay", "0.1") == (
        2.0, "constant", 0.1)
    # torchvision: LinearLR(start_factor=decay, total_iters=E) and ConstantLR(factor=decay, total_iters=E)
    linear = [lr_factor("cosine", e, 10, warmup_epochs=2, warmup_method="linear", warmup_decay=0.01)
              for e in (0.0, 1.0, 2.0)]
    assert linear[:2] == pytest.approx([0.01, 0.505]) and linear[2] == pytest.approx(1.0)
    assert lr_factor("step", 1.5, 10, warmup_epochs=2, warmup_method="constant") == 0.01
    assert lr_factor("step", 2.0, 10, warmup_epochs=2, warmup_method="constant") == 1.0
    for flags, message in ((["--lr-warmup-method", "exp", "--lr-warmup-epochs", "1"], "unknown --lr-warmup-method"),
                           (["--lr-warmup-decay", "0.1"], "need a warm-up; add --lr-warmup-epochs")):
        assert main.main([str(image_folder), "-a", "tinynet", *flags]) == 2
        assert message in capsys.readouterr().err


# ----------------------------------------------------------------------------- crop sizes


def test_crop_size_aliases_and_a_larger_val_crop(image_folder, tmp_path, capsys):
    from classify.resolve import build_config

    def data(*flags):
        return build_config(main.get_args_parser().parse_args([str(image_folder), "-a", "tinynet", *flags])).data

    d = data("--train-crop-size", "24", "--val-resize-size", "30")
    assert (d.image_size, d.val_crop_size, d.val_resize) == (24, 24, 30)  # = --image-size 24 --val-resize 30
    d = data("--train-crop-size", "24", "--val-crop-size", "32")  # FixRes: test above the train size
    assert (d.image_size, d.val_crop_size, d.val_resize) == (24, 32, 36)  # resize follows the recipe's 32/36
    train_in(capsys, image_folder, tmp_path, "--epochs", "1", "--image-size", "16", "--val-crop-size", "24")
    from classify.inference import load_trained_model

    assert load_trained_model(tmp_path / "checkpoint.pth.tar").image_size == 24
    from classify.data import DataSpec, build_datasets

    for backend in ("pil", "gpu"):
        ds = build_datasets(DataSpec(root=str(image_folder), image_size=16, val_resize=28, val_crop_size=24,
                                     backend=backend))
        if backend == "pil":
            assert ds.train[0][0].shape == (3, 16, 16) and ds.val[0][0].shape == (3, 24, 24)
        else:
            assert (ds.train.image_size, ds.val.image_size) == (16, 24)
    assert main.main([str(image_folder), "-a", "tinynet", "--val-crop-size", "40", "--val-resize", "36"]) == 2
    assert "--val-resize 36 is smaller than --val-crop-size 40" in capsys.readouterr().err


# ----------------------------------------------------------------------------- auto-augment, random erasing


@pytest.mark.parametrize("policy", ["ra", "ta_wide", "augmix", "imagenet"])
def test_auto_augment_policies_are_seeded_per_sample(image_folder, policy):
    from PIL import Image

    from classify.transforms import AugmentSpec, train_transform

    path = next((image_folder / "train" / "red").iterdir())
    plain, augmented = train_transform(24), train_transform(24, augment=AugmentSpec(auto_augment=policy))

    def run(tf, seed):
        torch.manual_seed(seed)
        return tf(Image.open(path))

    out = [run(augmented, s) for s in (0, 0, 1, 2, 3)]
    assert out[0].dtype == torch.uint8 and out[0].shape == (3, 24, 24) and torch.equal(out[0], out[1])
    assert any(not torch.equal(o, run(plain, s)) for o, s in zip(out[2:], (1, 2, 3)))  # the policy did something


def test_random_erase_fills_with_the_mean_and_gpu_backend_refuses(image_folder, capsys, tmp_path):
    from PIL import Image

    from classify.transforms import AugmentSpec, train_transform

    tf = train_transform(24, augment=AugmentSpec(random_erase=1.0, mean=(0.5, 0.25, 0.75)))
    torch.manual_seed(0)
    out = tf(Image.open(next((image_folder / "train" / "red").iterdir())))
    erased = (out[0] == 128) & (out[1] == 64) & (out[2] == 191)  # normalised, these pixels are 0
    assert erased.sum() >= 24 * 24 * 0.02
    for flags in (["--auto-augment", "ra"], ["--reprob", "0.25"]):
        assert main.main([str(image_folder), "-a", "tinynet", "--data-backend", "gpu", "--device", "cpu",
                          "--workers", "0", *flags]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == ["error: --data-backend gpu cannot apply --auto-augment/--random-erase (PIL-path policies): "
                       "use --data-backend pil"]
    train_in(capsys, image_folder, tmp_path, "--epochs", "1", "--aa", "ta_wide", "--reprob", "0.5")  # end to end
    assert main.main([str(image_folder), "-a", "tinynet", "--aa", "rand-m9-mstd0.5"]) == 2
    assert "--auto-augment ra --ra-magnitude 9" in capsys.readouterr().err


# ----------------------------------------------------------------------------- repeated augmentation


def test_repeated_aug_sampler_spreads_copies_over_ranks_and_resumes():
    from classify.data.samplers import RepeatedAugSampler

    shards = [list(RepeatedAugSampler(10, rank, 3, seed=5, reps=3)) for rank in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]  # ceil(10 / 3) on every rank: equal steps
    firsts = [s[0][0] for s in shards]
    assert len(set(firsts)) == 1  # the first image's 3 copies, one on each rank ...
    assert len({s[0][1] for s in shards}) == 3  # ... each with its own augmentation seed
    one = list(RepeatedAugSampler(10, 0, 1, seed=5, reps=3))
    assert [i for i, _ in one][:9:3] == [i for i, _ in one][1:9:3] and len(one) == 10
    resumed = RepeatedAugSampler(10, 1, 3, seed=5, reps=3)
    resumed.skip(2)
    assert list(resumed) == shards[1][2:]
    moved = RepeatedAugSampler(10, 0, 3, seed=5, reps=3)
    moved.set_epoch(1)
    assert list(moved) != shards[0]


def test_lever_value_errors(image_folder, capsys):
    for flags, message in ((["--mixup-switch-prob", "2"], "--mixup-switch-prob is a probability in [0, 1], got 2.0"),
                           (["--ra-reps", "2"], "--ra-reps needs --ra-sampler"),
                           (["--clip-grad-norm", "0"], "--clip-grad-norm must be > 0"),
                           (["--grad-accum-steps", "0"], "--grad-accum-steps must be >= 1")):
        assert main.main([str(image_folder), "-a", "tinynet", *flags]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


# ----------------------------------------------------------------------------- progressive resizing


def test_progressive_resize_schedule_is_ffcv_s():
    import numpy as np

    from classify.schedules import progressive_size

    def ffcv(epoch, min_res=160, max_res=192, start_ramp=65, end_ramp=76):  # ffcv-imagenet get_resolution
        if epoch <= start_ramp:
            return min_res
        if epoch >= end_ramp:
            return max_res
        return int(np.round(np.interp([epoch], [start_ramp, end_ramp], [min_res, max_res])[0] / 32)) * 32

    sizes = [progressive_size(e, start=160, end=192, from_epoch=65, to_epoch=76) for e in range(88)]
    assert sizes == [ffcv(e) for e in range(88)] and sizes[0] == 160 and sizes[-1] == 192
    assert [progressive_size(e, start=128, end=224, from_epoch=0, to_epoch=3) for e in range(4)] == [128, 160, 192, 224]


def test_progressive_resize_trains_logs_and_resumes_at_each_epoch_s_size(image_folder, tmp_path, capsys):
    import json

    flags = ["--epochs", "2", "--progressive-resize", "16:48"]  # the ramp spans the run: 16, then 48
    log = train_in(capsys, image_folder, tmp_path / "straight", *flags)
    assert "[epoch 0] train size 16 (--progressive-resize 16:48:0:1)" in log and "[epoch 1] train size 48" in log
    records = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_size"] for r in records] == [16, 48]
    split = tmp_path / "split"
    train_in(capsys, image_folder, split, *flags, "--stop-step-num", "4")  # 36 images, batch 8: epoch 0 only
    log = train_in(capsys, image_folder, split, *flags, "--resume", str(split / "checkpoint.pth.tar"))
    assert "[epoch 1] train size 48" in log and "[epoch 0]" not in log
    assert_same(load_checkpoint(tmp_path / "straight" / "checkpoint.pth.tar")["state_dict"],
                load_checkpoint(split / "checkpoint.pth.tar")["state_dict"])
    log = train_in(capsys, image_folder, tmp_path / "gpu", "--epochs", "1", "--progressive-resize", "24:32",
                   "--data-backend", "gpu", "--device", "cpu")
    assert "[epoch 0] train size 24" in log
    assert main.main([str(image_folder), "-a", "tinynet", "--progressive-resize", "160"]) == 2
    assert "--progressive-resize takes START:END or START:END:FROM_EPOCH:TO_EPOCH" in capsys.readouterr().err


def test_bench_levers_option(capsys):
    import json

    from tools import bench

    assert bench.main(["--arch", "tinynet", "--device", "cpu", "--levers", "grad_accum_2,ema_every_step",
                       "--image-size", "16", "-b", "4", "--steps", "2", "--warmup", "1", "--num-classes", "4",
                       "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["levers"]
    assert [r["lever"] for r in rows] == ["off", "grad_accum_2", "ema_every_step"]
    assert rows[0]["cost_pct"] == 0.0 and all(r["img_per_s"] > 0 for r in rows)
