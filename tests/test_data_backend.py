"""--data-backend gpu: workers read bytes, the device decodes (here: the CPU fallback of the same code)."""

import json

import numpy as np

import pytest
import torch
from PIL import Image

from classify.data import DataSpec, build_datasets, build_loader
from classify.data.device_decode import DeviceDecode, JpegFiles, collate_jpeg
from classify.data.folder import SafeImageFolder
from classify.transforms import val_transform
from tests.conftest import tiny_args, train_in_process, write_image_folder
from tests.test_train import write_cifar

CPU = torch.device("cpu")


@pytest.fixture
def messy_folder(tmp_path):
    """3 classes of 40 px JPEGs plus a truncated JPEG, a text file named .jpg and a PNG."""
    root = write_image_folder(tmp_path / "data", train_per_class=4, val_per_class=2)
    good = (root / "train" / "red" / "000.jpg").read_bytes()
    (root / "train" / "red" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "train" / "green" / "notanimage.jpg").write_text("hello")
    Image.new("RGB", (50, 30), (0, 0, 255)).save(root / "train" / "blue" / "png.png")
    deep = (np.arange(30 * 40, dtype=np.uint16).reshape(30, 40) * 50)
    Image.fromarray(deep).save(root / "train" / "blue" / "png16.png")  # 16-bit: decode_image gives uint16
    return root


def samples(folder):
    return [folder.table[i] for i in range(len(folder))]


def batch_of(dataset, indices, seed=0):
    torch.manual_seed(seed)
    return collate_jpeg([dataset[i] for i in indices])


def test_device_decode_crops_flips_and_drops_bad_files(messy_folder):
    folder = SafeImageFolder(messy_folder / "train")
    data = JpegFiles(folder.table, folder.classes, True, 24, 28)
    images, target, bad = DeviceDecode(CPU, True, 24, 28)(batch_of(data, range(len(data))))
    # 12 good JPEGs + 2 PNGs; the text file fails in the worker, the truncated JPEG on decode.
    assert images.shape == (14, 3, 24, 24) and images.dtype == torch.uint8 and bad == 2
    assert sorted(target.tolist()) == sorted(t for p, t in samples(folder) if "truncated" not in p
                                             and "notanimage" not in p)
    again, _, _ = DeviceDecode(CPU, True, 24, 28)(batch_of(data, range(len(data))))
    other, _, _ = DeviceDecode(CPU, True, 24, 28)(batch_of(data, range(len(data)), seed=1))
    assert torch.equal(images, again) and not torch.equal(images, other)  # a function of the seed


def test_all_bad_batch_is_none(messy_folder):
    folder = SafeImageFolder(messy_folder / "train")
    data = JpegFiles(folder.table, folder.classes, True, 24, 28)
    bad_ones = [i for i, (p, _) in enumerate(samples(folder)) if "truncated" in p or "notanimage" in p]
    assert DeviceDecode(CPU, True, 24, 28)(batch_of(data, bad_ones)) == (None, None, 2)


def test_val_decode_matches_the_pil_val_transform(tmp_path):
    root = write_image_folder(tmp_path / "d", train_per_class=1, val_per_class=3, size=90)
    folder = SafeImageFolder(root / "val")
    data = JpegFiles(folder.table, folder.classes, False, 64, 73)
    images, target, bad = DeviceDecode(CPU, False, 64, 73)(collate_jpeg([data[i] for i in range(len(data))]))
    pil = torch.stack([val_transform(64, 73)(Image.open(p)) for p, _ in samples(folder)])
    assert bad == 0 and target.tolist() == folder.table.labels.tolist() and images.shape == pil.shape == (9, 3, 64, 64)
    # Same resize + centre crop; libjpeg vs PIL's decoder and resampling differ by a few levels.
    assert (images.float() - pil.float()).abs().mean() < 3.0


def test_loader_yields_device_batches_and_keeps_the_sampler(image_folder):
    data = build_datasets(DataSpec(root=str(image_folder), image_size=32, val_resize=36, backend="gpu"))
    assert isinstance(data.train, JpegFiles) and data.classes == ["blue", "green", "red"]
    loader = build_loader(data.train, batch_size=8, workers=0, train=True, seed=3, device=CPU)
    loader.sampler.set_epoch(1)
    batches = list(loader)
    assert len(batches) == len(loader) == 36 // 8
    images, target, bad = batches[0]
    assert images.shape == (8, 3, 32, 32) and images.device == CPU and bad == 0


def test_train_with_gpu_backend_end_to_end(image_folder, tmp_path, capsys):
    out = tmp_path / "out"
    log = train_in_process(capsys, *tiny_args(image_folder, out, "--epochs", "2", "--image-size", "32",
                                              "--data-backend", "gpu"))
    assert "(decoded on the device)" in log and log.count(" * Acc@1") == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["val_images"] == 21 and summary["final_acc1"] > 50  # colour classes: easy
    assert (out / "model_best.pth.tar").is_file()


def test_gpu_backend_errors_are_one_line(tmp_path, capsys):
    import main

    cifar = tmp_path / "cifar-10-batches-py"
    cifar.mkdir()
    write_cifar(cifar)
    assert main.main([str(cifar), "-a", "tinynet", "--data-backend", "gpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "use --data-backend pil" in err
    assert main.main(["-a", "googlenet", "--recipe", "googlenet_mindspore", "--data-backend", "gpu",
                      "--epochs", "1", "--output-dir", str(tmp_path / "o")]) == 2
    assert "no colour jitter" in capsys.readouterr().err


def test_data_backend_dummy_is_dummy(tmp_path, capsys):
    log = train_in_process(capsys, "-a", "tinynet", "--data-backend", "dummy", "--dummy-size", "16,8", "-b", "8",
                           "--workers", "0", "--epochs", "1", "--image-size", "32", "--output-dir", tmp_path)
    assert "dummy data 'synthetic'" in log and "16 train / 8 val images" in log
