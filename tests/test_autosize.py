"""Defaults that fit the data (classify.resolve, classify.data.profile): the image size near
small images' own, a recipe batch shrunk to a training set it cannot fill, RandomResizedCrop's
ranges (--rrc-scale/--rrc-ratio), and the header's and --check's facts with their sources."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import models
from classify import check as checks
from classify.data import DataSpec, build_datasets
from classify.data.profile import profile_folder
from classify.errors import UserError
from classify.resolve import SMALL_IMAGE_SCALE, build_config
from classify.transforms import DraftRandomResizedCrop, sample_crop
from main import get_args_parser
from tests.conftest import run_in_process, train_in_process


def config(*argv, world_size=1, local_world=1):
    return build_config(get_args_parser().parse_args([str(a) for a in argv]), world_size, local_world)


def linked_folder(root: Path, *, width: int, height: int, train: int, classes: int = 2, val: int = 2) -> Path:
    """``train`` images per class (hard links of one JPEG of ``width`` x ``height``: a large
    tree made in milliseconds), ``val`` per class in val/."""
    source = root / "source.jpg"
    root.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(source, quality=80)
    for split, n in (("train", train), ("val", val)):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                os.link(source, folder / f"{i:04d}.jpg")
    return root


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """150 + 150 training images of 60x40: 300 images, too few for googlenet's batch of 512."""
    return linked_folder(tmp_path_factory.mktemp("small") / "data", width=60, height=40, train=150)


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory) -> Path:
    """2 x 1100 photos of 500x375 (ImageNet's typical size): >= 4 batches of 512."""
    return linked_folder(tmp_path_factory.mktemp("inet") / "data", width=500, height=375, train=1100)


def test_small_images_train_near_their_own_size(small):
    cfg = config(small, "-a", "googlenet", "-b", "32")
    # median short side 40 -> 48 (a multiple of 16), val resize 48 x 256/224
    assert (cfg.data.image_size, cfg.data.val_resize) == (48, round(48 * 256 / 224))
    assert cfg.sources.image_size == "data" and "median short side 40 px" in cfg.sources.data_note
    assert cfg.data.rrc_scale == SMALL_IMAGE_SCALE and cfg.sources.augmentation == "data"


def test_the_nets_minimum_wins_over_the_data(small):
    cfg = config(small, "-a", "alexnet", "-b", "32")
    assert cfg.data.image_size == models.min_image_size("alexnet") == 63


def test_imagenet_sized_images_keep_the_recipe_exactly(imagenet_like):
    for arch in ("googlenet", "inception_resnet_v2"):
        cfg = config(imagenet_like, "-a", arch)
        recipe = models.get_recipe(models.default_recipe(arch))
        assert (cfg.data.image_size, cfg.data.val_resize) == (recipe.image_size, recipe.val_resize)
        assert (cfg.optim.batch_size, cfg.optim.lr) == (recipe.global_batch(1), recipe.lr(1))
        assert cfg.data.rrc_scale == (0.08, 1.0) and cfg.data.rrc_ratio == (3 / 4, 4 / 3)
        assert (cfg.sources.image_size, cfg.sources.batch, cfg.sources.lr) == ("recipe",) * 3
        assert cfg.sources.batch_note == ""
    assert profile_folder(str(imagenet_like), need_images=2048).short_side == 375


def test_a_batch_the_data_cannot_fill_shrinks_with_the_lr(small):
    cfg = config(small, "-a", "googlenet")  # recipe: 512 at lr 0.1; 300 small images
    assert (cfg.optim.batch_size, cfg.optim.per_device_batch) == (32, 32)  # 300 // 32 = 9 steps; not below 32
    assert cfg.optim.lr == pytest.approx(0.1 * 32 / 512)
    assert (cfg.sources.batch, cfg.sources.lr) == ("data", "data")
    note = cfg.sources.batch_note
    assert "\n" not in note and "batch 32" in note and "512" in note and "lr 0.00625" in note
    assert "9 steps per epoch" in note
    two = config(small, "-a", "googlenet", world_size=2, local_world=2)  # 150 per process -> 32 each
    assert (two.optim.batch_size, two.optim.per_device_batch) == (64, 32)
    assert two.optim.lr == pytest.approx(0.9 * 64 / 4096)  # the recipe's 8p point, scaled as it scales it


def test_small_images_halve_the_batch_towards_32_steps(tmp_path):
    """2,200 small images: 512 -> 64 (34 steps per epoch, the first at or above 32); the same
    count of ImageNet-sized photos keeps the recipe's 512 (4 steps: test above)."""
    many = linked_folder(tmp_path / "data", width=60, height=40, train=1100)
    cfg = config(many, "-a", "googlenet")
    assert (cfg.optim.batch_size, cfg.optim.lr) == (64, pytest.approx(0.1 * 64 / 512))
    assert "34 steps per epoch" in cfg.sources.batch_note
    # a flag's image size does not change what the images are: still small
    assert config(many, "-a", "googlenet", "--image-size", "96").optim.batch_size == 64


def test_flags_win(small):
    cfg = config(small, "-a", "googlenet", "--image-size", "96", "-b", "32", "--lr", "0.2", "--epochs", "3")
    assert (cfg.data.image_size, cfg.optim.batch_size, cfg.optim.lr, cfg.optim.epochs) == (96, 32, 0.2, 3)
    assert cfg.data.rrc_scale == (0.08, 1.0)  # the recipe's crop at the recipe-like size the flag chose
    s = cfg.sources
    assert (s.image_size, s.batch, s.lr, s.epochs) == ("flag",) * 4
    assert config(small, "-a", "googlenet", "--train-crop-size", "80").data.image_size == 80
    assert config(small, "-a", "googlenet", "--val-resize", "70").data.val_resize == 70


def test_an_impossible_batch_flag_stays_an_error(capsys, small, tmp_path):
    code, _, err = run_in_process(capsys, small, "-a", "tinynet", "-b", "512", "--workers", "0",
                                  "--output-dir", tmp_path / "out")
    assert code != 0 and "global batch 512 is larger than the 300 training images" in err


def test_rrc_flags_reach_the_crop(small):
    cfg = config(small, "--rrc-scale", "0.5,0.6", "--ratio", "1,1")
    assert (cfg.data.rrc_scale, cfg.data.rrc_ratio, cfg.sources.augmentation) == ((0.5, 0.6), (1.0, 1.0), "flag")
    assert config(small, "--scale", "0.3,1").data.rrc_scale == (0.3, 1.0)  # timm's spelling
    data = build_datasets(DataSpec(root=str(small), image_size=32, val_resize=36, rrc_scale=(0.5, 0.6),
                                   rrc_ratio=(1.0, 1.0)))
    crop = data.train.transform.transforms[0]
    assert isinstance(crop, DraftRandomResizedCrop) and (crop.scale, crop.ratio) == ((0.5, 0.6), (1.0, 1.0))
    torch.manual_seed(0)
    for _ in range(200):
        _, _, h, w, _ = sample_crop(400, 300, (0.5, 0.6), (1.0, 1.0))
        assert 0.5 * 120000 * 0.98 <= h * w <= 0.6 * 120000 * 1.02 and abs(h - w) <= 1
    areas = [np.prod(sample_crop(400, 300)[2:4]) / 120000 for _ in range(200)]
    assert min(areas) < 0.3  # the default range reaches far smaller crops


@pytest.mark.parametrize("value", ["0.5", "0,1", "0.6,0.5", "0.5,1.5", "a,b", "nan,1"])
def test_bad_rrc_scale_is_one_line(small, value):
    with pytest.raises(UserError, match="--rrc-scale takes MIN,MAX"):
        config(small, "--rrc-scale", value)


def test_check_prints_the_same_facts(capsys, small, tmp_path):
    code, out, err = run_in_process(capsys, "--check", small, "-a", "googlenet", "--output-dir", tmp_path / "o")
    assert code == 0, err
    values = dict(line.split(" = ", 1) for line in out.splitlines())
    assert list(values)[:15] == list(checks.KEYS[:15])  # the launchers' keys first, as before
    assert (values["global_batch"], values["image_size"], values["val_resize"]) == ("32", "48", "55")
    assert (values["image_size_from"], values["global_batch_from"], values["lr_from"]) == ("data",) * 3
    assert (values["steps_per_epoch"], values["lr"], values["epochs_from"]) == ("9", "0.00625", "recipe")
    assert values["augmentation"].startswith("random-resized-crop scale 0.25-1")


def test_header_names_values_and_sources_and_resume_resolves_the_same(capsys, tmp_path):
    data = linked_folder(tmp_path / "data", width=24, height=20, train=10, classes=3)
    out = tmp_path / "out"
    args = [data, "-a", "tinynet", "--workers", "0", "-p", "2", "--output-dir", out]
    log = train_in_process(capsys, *args, "--epochs", "1")
    # tinynet's recipe: 32 px, batch 8 at lr 0.05; 30 images of 20 px: 16 px, batch 4 (7 steps)
    assert "=> batch 4 (4/device) instead of the recipe's 8" in log
    header = next(line for line in log.splitlines() if line.startswith("=> image size"))
    assert header.startswith("=> image size 16 train / 16 val (resize 18) [data (median short side 20 px")
    assert "epochs 1 [flag]" in header and "7 steps/epoch [batch: data]" in header and "lr 0.025 [data]" in header
    assert "scale 0.25-1" in header and header.endswith("[data]")
    log = train_in_process(capsys, *args, "--epochs", "2", "--resume", "auto")  # same identity: it continues
    assert "Epoch: [1]" in log and "Epoch: [0]" not in log


def test_rrc_ranges_reach_the_device_decode_path(small):
    """--data-backend gpu: the workers draw the crop plan with the same ranges."""
    from classify.data.device_decode import jpeg_sample

    data = (small / "source.jpg").read_bytes()  # 60 x 40
    torch.manual_seed(0)
    for _ in range(100):
        _, (_, _, h, w, _), _ = jpeg_sample(data, 0, True, ((0.5, 0.6), (1.0, 1.0)))
        assert 0.5 * 2400 * 0.9 <= h * w <= 0.6 * 2400 * 1.1
    spec = DataSpec(root=str(small), image_size=32, val_resize=36, backend="gpu", rrc_scale=(0.5, 0.6))
    assert build_datasets(spec).train.crop == ((0.5, 0.6), (3 / 4, 4 / 3))
