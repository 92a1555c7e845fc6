"""Train or evaluate the registered classic CNNs (``models.list_models()``) on ImageNet-style data.

    python main.py /data/imagenet -a vgg16 --epochs 120 --amp      # pytorch/examples style
    python main.py --data_path=/data/imagenet --arch alexnet      # ModelZoo style
    python main.py                                                # the built-in demo set
    torchrun --nproc_per_node 8 main.py /data/imagenet            # one process per device

Flags are the union of pytorch/examples' and the seed READMEs', with their aliases
(classify/cli.py). A recipe supplies defaults; every flag given on the command line wins
(classify/resolve.py). This file is glue: flags -> config -> run, exceptions -> one line.
"""

import errno
import os
import sys
from typing import Optional

try:  # importing torch takes seconds: a Ctrl-C then is one line too, not a traceback
    import torch

    from classify.cli import get_args_parser, launcher_flags, wants_launcher
    from classify.errors import Interrupted, NonFiniteLoss, UserError, os_error_text
    from classify.resolve import build_config
except KeyboardInterrupt:
    print("error: interrupted while starting (SIGINT); nothing was written", file=sys.stderr, flush=True)
    sys.exit(130)

__all__ = ["get_args_parser", "check", "main"]


def check(argv, world_size: int, local_world: int, *, job: Optional[str] = None):
    """The launcher's pre-flight before it starts the workers (``classify.launch``), with its
    ``job`` (rendezvous) id: the config, and what the run reads first (``classify.check``)."""
    from classify.check import inspect

    args = get_args_parser().parse_args(argv)
    if args.check:  # an abbreviation that main_8p.py did not take for --check: it would reach the workers
        raise UserError("write --check in full (main_8p.py looks for the whole word)")
    cfg = build_config(args, world_size, local_world)
    inspect(cfg, resolve_auto=False, job=job)  # --resume auto: each worker's run resolves it
    return cfg


def _wants_launcher(args) -> bool:
    return wants_launcher(multiprocessing_distributed=args.multiprocessing_distributed,
                          is_distributed=args.is_distributed, device_list=args.device_list, environ=os.environ)


def _launcher_flags(args) -> list:
    return launcher_flags(device=args.device, device_list=args.device_list, device_id=args.device_id,
                          world_size=args.world_size, rank=args.rank, addr=args.addr, dist_url=args.dist_url)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = get_args_parser().parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    who = "" if rank == 0 else f"[rank {rank}] "
    try:
        if args.check:  # what this run would use, checked (classify/check.py): 0, or 1 with one error line
            from classify.check import check_run

            return check_run(lambda _worker_argv, world, local: build_config(args, world, local),
                             launcher_argv=_launcher_flags(args) if _wants_launcher(args) else None)
        if _wants_launcher(args):
            from classify.launch import launch

            return launch(argv, validate=check)
        from classify.distributed import dist_info_from_env
        from classify.run import run

        info = dist_info_from_env()
        run(build_config(args, world_size=info.world_size, local_world=info.local_world_size))
    except (UserError, NonFiniteLoss) as e:
        print(f"error: {who}{e}", file=sys.stderr, flush=True)
        return e.exit_code
    except Interrupted as e:
        if rank == 0:
            print(f"=> {e}", file=sys.stderr, flush=True)
        return e.exit_code
    except torch.OutOfMemoryError:
        print(f"error: {who}out of memory on the device; use a smaller -b/--batch-size, --amp, or a smaller "
              "--image-size", file=sys.stderr, flush=True)
        return 1
    except OSError as e:  # a path the filesystem refused (full, read-only, a file where a folder should be)
        if e.filename is None and e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"error: {'' if rank == 0 else f'[rank {rank}] '}{os_error_text(e)}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:  # before training (import, data scan, model) or a second Ctrl-C
        print("error: interrupted (SIGINT)", file=sys.stderr, flush=True)
        return 130
    except RuntimeError as e:
        from classify.distributed import lost_peer

        if not lost_peer(e):
            raise
        print(f"error: [rank {rank}] lost a peer process ({str(e).splitlines()[0][:160]}); torchrun's agent stops "
              "or restarts the job", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
