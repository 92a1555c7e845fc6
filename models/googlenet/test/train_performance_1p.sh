#!/bin/bash
# GoogLeNet (Googlenet_ID0447_for_PyTorch): throughput run (a bounded number of steps, no validation): FPS; one device.
# Usage: bash test/train_performance_1p.sh [--data_path=DIR] [--batch_size=N] ... (--help); see ../README.md.
source "$(dirname "${BASH_SOURCE[0]}")/../../../test/common.sh"
model_launcher googlenet Googlenet_ID0447_for_PyTorch performance 1p "$@"
