"""Train/val presets: reduced-size JPEG decode (PIL draft), crop parameters and per-sample seeding."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import RandomResizedCrop
from torchvision.transforms import functional as F

from classify.data.samplers import SeededDataset
from classify.transforms import (DraftRandomResizedCrop, DraftRGB, _draft, pil_to_uint8, sample_crop,
                                 train_transform, val_transform)


def test_sample_crop_has_torchvisions_distribution():
    """Same box distribution as RandomResizedCrop.get_params (area, aspect, position), a fair flip."""
    torch.manual_seed(0)
    ours = torch.tensor([sample_crop(500, 375)[:4] for _ in range(3000)], dtype=torch.float64)
    flips = [sample_crop(500, 375)[4] for _ in range(2000)]
    torch.manual_seed(1)
    img = Image.new("RGB", (500, 375))
    ref = torch.tensor([RandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(3000)],
                       dtype=torch.float64)
    for stats in (lambda t: t.mean(0), lambda t: t.std(0), lambda t: (t[:, 2] * t[:, 3]).mean().view(1)):
        a, b = stats(ours), stats(ref)
        assert torch.allclose(a, b, rtol=0.06), (a, b)
    assert (ours[:, 0] + ours[:, 2] <= 375).all() and (ours[:, 1] + ours[:, 3] <= 500).all() and (ours >= 0).all()
    assert 0.45 < sum(flips) / len(flips) < 0.55
    # A very wide image: no try fits, so the centre crop clamped to the ratio (here 1:1).
    assert sample_crop(1000, 10, scale=(0.99, 1.0), ratio=(1.0, 1.0))[:4] == (0, 495, 10, 10)


def test_pil_to_uint8_matches_torchvision():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8))
    assert torch.equal(pil_to_uint8(img), F.pil_to_tensor(img))


def _photo(path, size=(512, 384), fmt="JPEG"):
    """A smooth colour image (gradients + blobs): downscaled versions of it stay close."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = np.stack([255 * x / w, 255 * y / h, 128 + 100 * np.sin(x / 37) * np.cos(y / 23)], -1)
    Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).save(path, fmt, quality=92)
    return path


@pytest.fixture
def jpeg(tmp_path):
    return _photo(tmp_path / "photo.jpg")


def test_draft_scales_in_the_jpeg_decoder_only_as_far_as_allowed(jpeg, tmp_path):
    assert _draft(Image.open(jpeg), 4.0).size == (128, 96)
    assert _draft(Image.open(jpeg), 3.9).size == (256, 192)  # 1/2, never below the limit
    assert _draft(Image.open(jpeg), 1.9).size == (512, 384)
    assert _draft(Image.open(jpeg), 100).size == (64, 48)  # libjpeg's smallest: 1/8
    odd = _photo(tmp_path / "odd.jpg", size=(500, 375))  # PIL rounds the scale down: ask with floor
    assert _draft(Image.open(odd), 2.0).size == (250, 188)
    assert _draft(Image.open(odd), 8.5).size == (63, 47)
    png = _photo(tmp_path / "photo.png", fmt="PNG")
    assert _draft(Image.open(png), 4.0).size == (512, 384)  # not a JPEG: full decode
    loaded = Image.open(jpeg)
    loaded.load()
    assert _draft(loaded, 4.0).size == (512, 384)  # already decoded: nothing to save
    assert _draft(Image.open(jpeg).convert("L"), 1).mode == "RGB"
    assert _draft(loaded, 4.0) is loaded  # an RGB image is not copied
    rgba = Image.open(png).convert("RGBA")
    assert _draft(rgba, 1).mode == "RGB" and rgba.mode == "RGBA"  # other modes: converted, the input kept


def test_draft_crop_matches_a_full_decode_crop(jpeg):
    crop = DraftRandomResizedCrop(48)
    diffs, drafted = [], 0
    for seed in range(20):
        torch.manual_seed(seed)
        fast = crop(Image.open(jpeg))
        torch.manual_seed(seed)
        full = Image.open(jpeg).convert("RGB")
        top, left, h, w, flip = sample_crop(*full.size)
        drafted += min(h, w) >= 96
        reference = F.pil_to_tensor(F.resized_crop(full, top, left, h, w, [48, 48], antialias=True))
        reference = reference.flip(-1) if flip else reference
        assert fast.shape == (3, 48, 48) and fast.dtype == torch.uint8
        diffs.append((fast.float() - reference.float()).abs().mean().item())
    # Same crop box; only the decoder's DCT downscale and the resize kernels differ.
    assert drafted >= 10 and max(diffs) < 4.0, diffs


def test_val_transform_decodes_reduced_but_keeps_the_resize(jpeg):
    out = val_transform(64, 73)(Image.open(jpeg))
    full = val_transform(64, 73)(Image.open(jpeg).convert("RGB"))
    assert out.shape == full.shape == (3, 64, 64) and out.dtype == torch.uint8
    assert (out.float() - full.float()).abs().mean() < 4.0
    assert DraftRGB(73)(Image.open(jpeg)).size == (128, 96)  # 1/4: shorter side 96 >= 73


def test_train_transform_is_a_function_of_the_sample_seed(jpeg):
    class One(torch.utils.data.Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            return train_transform(40)(Image.open(jpeg))

    data = SeededDataset(One())
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b, c = data[(0, 7)], data[(0, 7)], data[(0, 8)]
    assert torch.equal(a, b) and not torch.equal(a, c) and a.shape == (3, 40, 40)
    assert torch.equal(torch.get_rng_state(), before)  # the main process's RNG stream is untouched
