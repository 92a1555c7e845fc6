"""Average the weights of several checkpoints of one run into one checkpoint.

    python tools/avg_checkpoints.py OUT CKPT [CKPT ...]
    python tools/avg_checkpoints.py OUT --last N RUN_DIR     # RUN_DIR's N newest checkpoint-<epoch>.pth.tar

Every tensor of ``state_dict`` (and of ``state_dict_ema`` when every file has one, a
``--model-ema`` run's) is the mean over the files, BatchNorm running statistics included,
as timm's ``avg_checkpoints.py`` averages them: summed in float64 and divided by the count.
An integer tensor (BatchNorm's ``num_batches_tracked``) gets that mean cut to an integer,
the value timm's float32 mean takes when it is loaded into the integer buffer.

OUT holds weights only (no optimizer): ``main.py -e --resume OUT`` or ``-e --pretrained OUT``
evaluates it, ``--pretrained OUT`` starts a run from it, ``tools/predict.py --checkpoint OUT``
and ``tools/export_onnx.py`` read it. Keep epoch files with ``main.py --keep-checkpoints N``.
"""

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Sequence

import torch

from classify.checkpoint import (CheckpointManager, clean_state_dict, load_checkpoint, save_atomic,
                                 write_failure)
from classify.cli import OneLineParser
from classify.errors import UserError, os_error_text

__all__ = ["average_state_dicts", "average_checkpoints", "last_epoch_files", "main"]

# What OUT keeps of the newest input besides the weights: enough for -e, predict and export.
_KEPT = ("arch", "recipe", "args", "classes", "epoch")


def average_state_dicts(states: Sequence[Dict[str, torch.Tensor]], *, names: Sequence[str]) -> Dict[str, torch.Tensor]:
    """The key-wise mean of ``states`` (same keys and shapes; ``names`` for the error line)."""
    first = states[0]
    for state, name in zip(states[1:], names[1:]):
        if set(state) != set(first):
            extra = sorted(set(state) ^ set(first))[:2]
            raise UserError(f"'{name}' and '{names[0]}' hold different layers ({', '.join(extra)}); average "
                            "checkpoints of one network")
        for key, value in state.items():
            if value.shape != first[key].shape:
                raise UserError(f"'{name}': {key} has shape {tuple(value.shape)}, '{names[0]}' "
                                f"{tuple(first[key].shape)}; average checkpoints of one run")
    out = {}
    for key, value in first.items():
        total = torch.zeros(value.shape, dtype=torch.float64)
        for state in states:
            total += state[key].to(torch.float64)
        mean = total / len(states)
        out[key] = mean.to(value.dtype) if value.is_floating_point() else mean.trunc().to(value.dtype)
    return out


def average_checkpoints(paths: Sequence[Path]) -> Dict:
    """The averaged checkpoint of ``paths`` (weights and, where every file has them, EMA weights)."""
    if len(paths) < 2:
        raise UserError(f"averaging needs at least 2 checkpoints, got {len(paths)}")
    loaded = [load_checkpoint(p) for p in paths]
    names = [str(p) for p in paths]
    arches = {c.get("arch") for c in loaded}
    if len(arches) > 1:
        raise UserError(f"the checkpoints are of different networks ({', '.join(sorted(map(str, arches)))}); "
                        "average checkpoints of one run")
    out = {k: loaded[-1][k] for k in _KEPT if k in loaded[-1]}
    out["state_dict"] = average_state_dicts([clean_state_dict(c["state_dict"]) for c in loaded], names=names)
    if all(c.get("state_dict_ema") is not None for c in loaded):
        out["state_dict_ema"] = average_state_dicts([clean_state_dict(c["state_dict_ema"]) for c in loaded],
                                                    names=names)
    out["averaged_from"] = [Path(p).name for p in paths]
    return out


def last_epoch_files(run_dir: Path, n: int) -> List[Path]:
    """The ``n`` newest ``checkpoint-<epoch>.pth.tar`` of ``run_dir``, oldest first."""
    if not Path(run_dir).is_dir():
        raise UserError(f"'{run_dir}' is not a folder; pass the run's --output-dir to --last")
    found = [path for _, path in CheckpointManager(run_dir, is_main=True).epoch_files()]
    if len(found) < n:
        raise UserError(f"'{run_dir}' holds {len(found)} checkpoint-<epoch>.pth.tar files, fewer than --last {n}; "
                        f"pass --last {len(found)} or fewer (a run keeps them with --keep-checkpoints N)"
                        if found else f"'{run_dir}' holds no checkpoint-<epoch>.pth.tar files; train with "
                        "--keep-checkpoints N to keep them")
    return found[len(found) - n:]


def get_args_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="avg_checkpoints.py", description="Average the weights of checkpoints of one run")
    p.add_argument("output", metavar="OUT", help="the averaged checkpoint to write (must not exist)")
    p.add_argument("checkpoints", nargs="+", metavar="CKPT", help="checkpoint files, or with --last the run's folder")
    p.add_argument("--last", type=int, default=None, metavar="N",
                   help="average the N newest checkpoint-<epoch>.pth.tar of the folder given")
    return p


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        out = Path(args.output)
        if out.exists():
            raise UserError(f"'{out}' exists; pass a new file name (nothing is overwritten)")
        if args.last is not None:
            if args.last < 2 or len(args.checkpoints) != 1:
                raise UserError("--last N takes N >= 2 and one run folder: avg_checkpoints.py OUT --last N RUN_DIR")
            paths = last_epoch_files(Path(args.checkpoints[0]), args.last)
        else:
            paths = [Path(p) for p in args.checkpoints]
        state = average_checkpoints(paths)
        try:
            save_atomic(state, out)
        except (OSError, RuntimeError) as e:  # a full disk, a read-only folder (torch wraps some in RuntimeError)
            failure = write_failure(e, out, "nothing was written")
            if failure is None:
                raise
            raise failure from None
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    except OSError as e:  # an input the filesystem refuses (a link loop, no permission)
        print(f"error: {os_error_text(e)}", file=sys.stderr, flush=True)
        return 1
    print(f"=> averaged {len(paths)} checkpoints ({', '.join(p.name for p in paths)}) into {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
