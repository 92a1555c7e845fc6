"""Export a trained network to ONNX and check that onnxruntime agrees with PyTorch.

    python tools/export_onnx.py --checkpoint model_best.pth.tar --output model.onnx [--dynamic-batch]
                                [--image-size N] [--opset 17] [--atol 1e-4]
    python tools/export_onnx.py --arch alexnet --output alexnet.onnx    # random weights

The graph is the net's inference model in eval mode (``classify.inference``: built with
``ModelEntry.inference_build_kwargs``, so training-only heads are dropped).

Input ``input``: float32 N x 3 x H x W, an RGB image resized/centre-cropped like validation
and normalised, (x / 255 - mean) / std, the torchvision convention; H = W = the run's
``--image-size``. Output ``logits``: float32 N x num_classes (apply softmax for
probabilities). The mean, std, image size, resize and class names are stored in the
file's metadata (``metadata_props``) so a consumer can preprocess and label without this
repository. N is 1 unless ``--dynamic-batch``.

Uses torch's TorchScript-based exporter (``dynamo=False``): it needs only the ``onnx``
package, while the dynamo exporter (torch's default since 2.9) also needs ``onnxscript``.
Then ``onnx.checker`` validates the file and onnxruntime's CPU outputs must equal
PyTorch's within ``--atol`` (max abs diff printed) at batch 1, and 1 and 3 with
``--dynamic-batch``. Needs ``pip install onnx onnxruntime`` (optional dependencies).
"""

import argparse
import io
import json
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import torch
import torch.nn as nn

import models
from classify.cli import OneLineParser, finite_float
from classify.errors import UserError, os_error_text
from classify.inference import TrainedModel, build_inference_model, load_trained_model

__all__ = ["random_model", "export", "verify", "exportable_pooling", "FixedAdaptiveAvgPool2d", "ExportFailed", "main"]

INPUT, OUTPUT = "input", "logits"


# The TorchScript exporter's range (torch/onnx/_constants.py); below 9 lacks ops these nets use.
MIN_OPSET, MAX_OPSET = 9, 20


class ExportFailed(Exception):
    """The exporter fails, onnx.checker rejects the file or onnxruntime disagrees with PyTorch
    (exit 1: a failure of the export, not a usage error)."""


def _require_onnx():
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise UserError(f"ONNX export needs onnx and onnxruntime ({e.name} is not installed); "
                        "pip install onnx onnxruntime") from None
    return onnx, onnxruntime


def random_model(arch: str, num_classes: int) -> TrainedModel:
    """``--arch`` without a checkpoint: random weights, the net's default recipe preprocessing."""
    if arch not in models.list_models():
        raise UserError(f"unknown --arch '{arch}'; choose one of {', '.join(models.list_models())}")
    recipe = models.get_recipe(models.default_recipe(arch))
    # build_inference_model: entry.inference_build_kwargs(recipe.model_kwargs), in eval mode
    model = build_inference_model(arch, num_classes=num_classes, train_kwargs=recipe.model_kwargs)
    return TrainedModel(model=model, arch=arch, num_classes=num_classes, classes=[],
                        image_size=recipe.image_size, val_resize=recipe.val_resize,
                        mean=tuple(recipe.mean), std=tuple(recipe.std))


def _pool_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """n_out x n_in averaging matrix of adaptive average pooling along one axis (PyTorch's
    bins: start = floor(i * n_in / n_out), end = ceil((i + 1) * n_in / n_out))."""
    m = torch.zeros(n_out, n_in)
    for i in range(n_out):
        start, end = (i * n_in) // n_out, -(-(i + 1) * n_in // n_out)
        m[i, start:end] = 1.0 / (end - start)
    return m


class FixedAdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d`` for one known input size, as two matrix products.

    The TorchScript exporter refuses adaptive pooling whose output does not divide its input
    (AlexNet's 6x6 and VGG16's 7x7 pools below 224 px, e.g. VGG16 on 32 px CIFAR-10 images);
    for a fixed input size the pool is exactly rows @ x @ cols, which exports as MatMul."""

    def __init__(self, in_hw: Tuple[int, int], out_hw: Tuple[int, int]):
        super().__init__()
        self.register_buffer("rows", _pool_matrix(in_hw[0], out_hw[0]))  # oh x h
        self.register_buffer("cols", _pool_matrix(in_hw[1], out_hw[1]).t().contiguous())  # w x ow

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rows @ x @ self.cols  # N x C x h x w -> N x C x oh x ow


@contextmanager
def exportable_pooling(model: nn.Module, example: torch.Tensor) -> Iterator[List[str]]:
    """Swap each adaptive average pool the exporter cannot handle at this input size for a
    ``FixedAdaptiveAvgPool2d`` (same numbers), yield their names, then put the originals back."""
    pools = {name: m for name, m in model.named_modules()
             if type(m) is nn.AdaptiveAvgPool2d and m.output_size not in (1, (1, 1))}  # global pools export
    sizes: Dict[str, Tuple[int, int]] = {}
    if pools:  # one forward pass to learn their input sizes
        hooks = [m.register_forward_pre_hook(lambda mod, inputs, name=name: sizes.__setitem__(
            name, tuple(inputs[0].shape[-2:]))) for name, m in pools.items()]
        try:
            with torch.no_grad():
                model(example)
        finally:
            for hook in hooks:
                hook.remove()
    swapped = []
    for name, (h, w) in sizes.items():
        pool = model.get_submodule(name)
        size = pool.output_size if isinstance(pool.output_size, tuple) else (pool.output_size,) * 2
        oh, ow = (h if size[0] is None else size[0]), (w if size[1] is None else size[1])
        if h % oh == 0 and w % ow == 0:
            continue  # the exporter handles it (e.g. global pooling)
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, attr, FixedAdaptiveAvgPool2d((h, w), (oh, ow)))
        swapped.append((name, parent, attr, pool))
    try:
        yield [name for name, *_ in swapped]
    finally:
        for _, parent, attr, pool in swapped:
            setattr(parent, attr, pool)


def export(net: TrainedModel, output: Path, image_size: int, opset: int = 17,
           dynamic_batch: bool = False) -> List[str]:
    """Trace the eval-mode network at ``image_size`` and write ``output`` with metadata.
    Returns the names of the adaptive pools exported as fixed matrix products."""
    onnx, _ = _require_onnx()
    if image_size < models.min_image_size(net.arch):
        raise UserError(f"--image-size {image_size} is too small for {net.arch}; use at least "
                        f"{models.min_image_size(net.arch)}")
    net.model.eval()
    example = torch.randn(2 if dynamic_batch else 1, 3, image_size, image_size)
    axes = {INPUT: {0: "batch"}, OUTPUT: {0: "batch"}} if dynamic_batch else None
    buffer = io.BytesIO()
    with exportable_pooling(net.model, example) as swapped, warnings.catch_warnings():
        # The TorchScript exporter announces its deprecation and warns about traced shapes.
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(net.model, (example,), buffer, dynamo=False, input_names=[INPUT],
                              output_names=[OUTPUT], opset_version=opset, dynamic_axes=axes,
                              do_constant_folding=True)
        except torch.onnx.errors.OnnxExporterError as e:
            raise ExportFailed(f"the TorchScript exporter failed at opset {opset}: "
                               f"{str(e).splitlines()[0][:200]}") from None
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in _metadata(net, image_size).items():
        proto.metadata_props.add(key=key, value=value)
    output.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(output))
    return swapped


def _metadata(net: TrainedModel, image_size: int) -> Dict[str, str]:
    return {"arch": net.arch, "image_size": str(image_size), "val_resize": str(net.val_resize),
            "mean": json.dumps(list(net.mean)), "std": json.dumps(list(net.std)),
            "input": "float32 NCHW RGB, (x/255 - mean)/std", "output": "logits",
            "classes": json.dumps(net.classes or [str(i) for i in range(net.num_classes)])}


@torch.inference_mode()
def verify(net: TrainedModel, path: Path, image_size: int, batch_sizes: List[int], atol: float = 1e-4) -> float:
    """``onnx.checker`` on the file, then onnxruntime vs PyTorch on random inputs: returns the
    largest absolute difference; raises ``ExportFailed`` above ``atol``."""
    onnx, ort = _require_onnx()
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as e:
        raise ExportFailed(f"onnx.checker rejects '{path}': {str(e).splitlines()[0][:160]}") from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for n in batch_sizes:
        x = torch.randn(n, 3, image_size, image_size, generator=generator)
        expected = net.model(x).float()
        got = torch.from_numpy(session.run([OUTPUT], {INPUT: x.numpy()})[0])
        if got.shape != expected.shape:
            raise ExportFailed(f"onnxruntime output shape {tuple(got.shape)} != PyTorch {tuple(expected.shape)}")
        diff = (got - expected).abs().max().item()
        print(f"  batch {n}: onnxruntime vs PyTorch max abs diff {diff:.3g} "
              f"(largest |logit| {expected.abs().max().item():.3g})", flush=True)
        worst = max(worst, diff)
    if not worst <= atol:  # also catches NaN
        raise ExportFailed(f"onnxruntime differs from PyTorch by {worst:.3g} > --atol {atol:g}")
    return worst


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def get_args_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="export_onnx.py", description="Export to ONNX and check onnxruntime parity")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", "--pth_path", "--pth-path", help="checkpoint written by main.py")
    source.add_argument("--arch", "-a", help="export this network with random weights (no checkpoint)")
    parser.add_argument("--num-classes", "--num_classes", type=int, default=1000,
                        help="classes of a random-weight --arch export (default 1000)")
    parser.add_argument("--output", "-o", required=True, help="ONNX file to write")
    parser.add_argument("--dynamic-batch", action="store_true", help="variable batch dimension (default: 1)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="input height = width (default: the checkpoint's --image-size, else the recipe's)")
    parser.add_argument("--ema", action="store_true", help="export the EMA weights of a --model-ema run")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--atol", type=finite_float, default=1e-4, help="parity tolerance, max abs diff (default 1e-4)")
    return parser


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        _require_onnx()  # before any slow work
        if args.num_classes < 1:
            raise UserError("--num-classes must be at least 1")
        if not MIN_OPSET <= args.opset <= MAX_OPSET:
            raise UserError(f"--opset {args.opset} is outside what the TorchScript exporter supports "
                            f"({MIN_OPSET}-{MAX_OPSET}); use the default 17")
        net = (load_trained_model(args.checkpoint, ema=args.ema) if args.checkpoint
               else random_model(args.arch, args.num_classes))
        size = args.image_size or net.image_size
        output = Path(args.output)
        swapped = export(net, output, size, args.opset, args.dynamic_batch)
        print(f"exported {net.arch} to {output} ({_size(output.stat().st_size)}, opset {args.opset}, "
              f"TorchScript exporter): input '{INPUT}' float32 [{'batch' if args.dynamic_batch else 1}, 3, "
              f"{size}, {size}] normalised with mean {list(net.mean)} std {list(net.std)}; "
              f"output '{OUTPUT}' [{'batch' if args.dynamic_batch else 1}, {net.num_classes}]", flush=True)
        if swapped:
            print(f"  note: {', '.join(swapped)} (adaptive average pooling) exported as fixed matrix products "
                  f"for {size}x{size} inputs", flush=True)
        worst = verify(net, output, size, [1, 3] if args.dynamic_batch else [1], args.atol)
        print(f"onnx.checker OK; onnxruntime matches PyTorch (max abs diff {worst:.3g} <= {args.atol:g})")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    except ExportFailed as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    except OSError as e:  # --output in a folder that cannot be (a file in the way, read-only, full)
        print(f"error: {os_error_text(e)}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
