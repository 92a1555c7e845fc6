"""Single-node (or multi-node) multi-device launcher with the ModelZoo ``main-8p.py`` flags.

    python main_8p.py -a googlenet --amp --data /data/imagenet --addr=127.0.0.1 --seed=49 \\
        --workers=8 --learning-rate=0.5 --mom=0.9 --weight-decay=1e-4 --print-freq=30 \\
        --dist-url='tcp://127.0.0.1:50000' --dist-backend=hccl --multiprocessing-distributed \\
        --world-size=1 --rank=0 --benchmark=0 --device=npu --epochs=150 --batch-size=4096
    python main_8p.py --nproc_per_node=8 --visible_devices=0,1,2,3,4,5,6,7 main.py --per_batch_size=256 ...
    python main_8p.py --device cpu --device-list 0,1 --dummy ...      # two gloo processes on a laptop
    python main_8p.py --check --nproc_per_node=8 --data /data/imagenet  # what that run would use (classify/check.py)

It starts one ``main.py`` worker per device through torch.distributed.run (see
classify/launch.py); it holds no training logic.
"""

import sys

import main
from classify.check import check_run
from classify.cli import LAUNCHER_HELP
from classify.errors import UserError
from classify.launch import launch
from classify.resolve import build_config


def run(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "-h" in argv or "--help" in argv:
        main.get_args_parser().print_help()
        print(LAUNCHER_HELP)
        return 0
    try:
        if "--check" in argv:  # the workers, their devices and config, resolved and checked; nothing started
            return check_run(lambda worker_argv, world, local: build_config(main.get_args_parser().parse_args(
                worker_argv), world, local), launcher_argv=argv)
        return launch(argv, validate=main.check)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    except KeyboardInterrupt:  # Ctrl-C before the workers start (the check, torchrun's import)
        print("error: interrupted (SIGINT)", file=sys.stderr, flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(run())
