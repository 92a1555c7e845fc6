#!/bin/bash
# Accuracy run: the recipe's epochs (or the demo set's short schedule) with validation; reports Acc@1 + FPS.
# One process per device (--rank_size=, default 8 on npu/cuda, 2 gloo processes on cpu): python main_8p.py.
# Usage: bash test/train_full_8p.sh [--data_path=DIR] [--arch=NAME] [--batch_size=N] ... (--help); see README.md.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
launcher_main full 8p "$@"
