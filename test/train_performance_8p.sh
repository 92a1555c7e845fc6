#!/bin/bash
# Throughput run: a bounded number of steps (--stop_step_num=, default 500 on accelerators, 20 on cpu), no validation; reports FPS.
# One process per device (--rank_size=, default 8 on npu/cuda, 2 gloo processes on cpu): python main_8p.py.
# Usage: bash test/train_performance_8p.sh [--data_path=DIR] [--arch=NAME] [--batch_size=N] ... (--help); see README.md.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
launcher_main performance 8p "$@"
