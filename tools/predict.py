"""Classify images with a trained checkpoint: top-k class names and probabilities.

    python tools/predict.py --checkpoint model_best.pth.tar img1.jpg dir/ ... [--topk 5]
                            [--device auto] [--batch-size 32]

The network, its number of classes and the validation preprocessing (resize, centre crop,
mean/std) come from the checkpoint, so predictions match the trainer's evaluation.
Directories expand to the image files below them (recursively, sorted, hidden files
skipped). One line per image:

    val/red/000.jpg: red (91.20%), blue (5.01%), green (3.79%)

Class names are the ones the trainer stored in the checkpoint (ImageFolder order);
a checkpoint without them (torchvision/timm weights) prints class indices.
"""

import argparse
import sys
from pathlib import Path
from typing import Iterator, List, Sequence, Tuple

import torch
from PIL import Image, UnidentifiedImageError

from classify.amp import AmpSettings
from classify.devices import resolve_device
from classify.cli import OneLineParser
from classify.errors import UserError, os_error_text
from classify.inference import TrainedModel, load_trained_model
from classify.loop import tta_logits
from classify.schema import TTA_MODES
from classify.transforms import Normalize, val_transform

__all__ = ["find_images", "predict", "main"]

_FP32 = AmpSettings(False, None, None)  # predictions in float32, as the checkpoint's weights

# torchvision.datasets.folder.IMG_EXTENSIONS
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def find_images(inputs: Sequence[str]) -> List[Path]:
    """Files as given (any extension); directories expand recursively to image files,
    sorted, skipping hidden files and folders."""
    found: List[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found.extend(p for p in sorted(path.rglob("*"))
                         if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS
                         and not any(part.startswith(".") for part in p.relative_to(path).parts))
        elif path.is_file():
            found.append(path)
        else:
            raise UserError(f"'{item}' not found; pass image files or folders of images")
    return found


def _batches(paths: Sequence[Path], transform, batch_size: int) -> Iterator[Tuple[List[Path], torch.Tensor]]:
    """Decoded uint8 batches; an unreadable image is skipped with a warning line on stderr."""
    names: List[Path] = []
    images: List[torch.Tensor] = []
    for path in paths:
        try:
            with Image.open(path) as img:
                images.append(transform(img.convert("RGB")))
            names.append(path)
        except (OSError, UnidentifiedImageError, ValueError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            print(f"warning: skipping '{path}': cannot read it as an image ({reason})", file=sys.stderr, flush=True)
        if len(images) == batch_size:
            yield names, torch.stack(images)
            names, images = [], []
    if images:
        yield names, torch.stack(images)


@torch.inference_mode()
def predict(net: TrainedModel, paths: Sequence[Path], device: torch.device, topk: int = 5,
            batch_size: int = 32, *, tta: str = "none") -> Iterator[Tuple[Path, List[Tuple[str, float]]]]:
    """Yield (path, [(class name, probability in %), ...]) per readable image, best first.
    ``tta="flip"``: from the mean of the image's and its mirror's logits (as ``main.py -e --tta flip``)."""
    model = net.model.to(device)
    normalize = Normalize(net.mean, net.std).to(device)
    transform = val_transform(net.image_size, net.val_resize)
    k = min(topk, net.num_classes)
    for names, batch in _batches(paths, transform, batch_size):
        logits = tta_logits(model, normalize(batch.to(device, non_blocking=True)), device=device, amp=_FP32, tta=tta)
        probs, indices = logits.float().softmax(dim=1).topk(k, dim=1)
        for name, p_row, i_row in zip(names, probs.cpu().tolist(), indices.cpu().tolist()):
            yield name, [(_class_name(net.classes, i), 100.0 * p) for p, i in zip(p_row, i_row)]


def _class_name(classes: List[str], index: int) -> str:
    return classes[index] if index < len(classes) else str(index)


def _sizes(net: TrainedModel, resize, crop) -> TrainedModel:
    """``--val-resize-size``/``--val-crop-size`` over the run's (test-time resolution)."""
    import dataclasses

    crop = net.image_size if crop is None else crop
    resize = (net.val_resize if crop == net.image_size else round(crop * net.val_resize / net.image_size)
              ) if resize is None else resize
    if min(crop, resize) < 1 or resize < crop:
        raise UserError(f"--val-resize-size {resize} must be at least --val-crop-size {crop} (and both >= 1)")
    return dataclasses.replace(net, image_size=crop, val_resize=resize)


def get_args_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="predict.py", description="Top-k predictions of a trained checkpoint")
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files and/or folders")
    parser.add_argument("--checkpoint", "--pth_path", "--pth-path", required=True,
                        help="model_best.pth.tar / checkpoint.pth.tar written by main.py")
    parser.add_argument("--arch", "-a", default=None,
                        help="network for a bare state_dict without 'arch' (ignored otherwise)")
    parser.add_argument("--ema", action="store_true", help="use the EMA weights of a --model-ema run")
    parser.add_argument("--topk", type=int, default=5, help="classes to print per image (default 5)")
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda|gpu|npu (default auto)")
    parser.add_argument("-b", "--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    parser.add_argument("--tta", default="none", choices=TTA_MODES,
                        help="flip: average the logits of each image and its mirror (default none)")
    parser.add_argument("--val-resize-size", "--val_resize_size", "--val-resize", dest="val_resize", type=int,
                        default=None, metavar="S", help="resize before the centre crop (default: the run's)")
    parser.add_argument("--val-crop-size", "--val_crop_size", type=int, default=None, metavar="S",
                        help="centre crop (default: the run's val crop)")
    return parser


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        if args.topk < 1 or args.batch_size < 1:
            raise UserError("--topk and --batch-size must be at least 1")
        paths = find_images(args.inputs)
        if not paths:
            raise UserError(f"no images found in {', '.join(args.inputs)} (looked for "
                            f"{', '.join(IMG_EXTENSIONS)}); pass image files or folders of images")
        net = _sizes(load_trained_model(args.checkpoint, args.arch, ema=args.ema), args.val_resize, args.val_crop_size)
        device = resolve_device(args.device)
        done = 0
        for path, top in predict(net, paths, device, args.topk, args.batch_size, tta=args.tta):
            print(f"{path}: " + ", ".join(f"{name} ({p:.2f}%)" for name, p in top), flush=True)
            done += 1
        if done == 0:
            raise UserError(f"none of the {len(paths)} files could be read as an image")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    except OSError as e:  # an input the filesystem refuses (a link loop, no permission)
        print(f"error: {os_error_text(e)}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
