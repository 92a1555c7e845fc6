#!/bin/bash
# AlexNet (AlexNet_ID2663_for_PyTorch): throughput run (a bounded number of steps, no validation): FPS; one process per device (--rank_size=N).
# Usage: bash test/train_performance_8p.sh [--data_path=DIR] [--batch_size=N] ... (--help); see ../README.md.
source "$(dirname "${BASH_SOURCE[0]}")/../../../test/common.sh"
model_launcher alexnet AlexNet_ID2663_for_PyTorch performance 8p "$@"
