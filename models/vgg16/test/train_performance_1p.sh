#!/bin/bash
# Throughput run (a bounded number of steps, no validation): FPS; one device.
# The network is this folder's (models/<net>/); the same file in every folder (tools/new_model.py writes it).
# Usage: bash test/train_performance_1p.sh [--data_path=DIR] [--batch_size=N] ... (--help); see ../README.md.
source "$(dirname "${BASH_SOURCE[0]}")/../../../test/common.sh"
model_launcher performance 1p "$@"
