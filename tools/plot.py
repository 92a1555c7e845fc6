"""Draw training curves of one or several runs side by side from their metrics.jsonl.

    python tools/plot.py OUT_DIR [OUT_DIR...] [--output curves.png]

Four panels against epoch: train/val loss, Acc@1/Acc@5, lr, img/s; one colour per run,
labelled by its folder name. Needs matplotlib (optional: ``pip install matplotlib``).
"""

import argparse
import sys

from classify.cli import OneLineParser
from classify.errors import UserError, os_error_text
from classify.plots import plot_runs


def get_args_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="plot.py", description="Plot training curves from metrics.jsonl")
    parser.add_argument("runs", nargs="+", metavar="OUT_DIR",
                        help="output dir of a training run (holds metrics.jsonl), or a metrics .jsonl file")
    parser.add_argument("-o", "--output", default="curves.png", help="PNG to write (default: curves.png)")
    return parser


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        out = plot_runs(args.runs, args.output)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    except OSError as e:  # --output in a folder that cannot be written
        print(f"error: {os_error_text(e)}", file=sys.stderr, flush=True)
        return 1
    print(f"wrote {out} ({len(args.runs)} run{'s' if len(args.runs) > 1 else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
