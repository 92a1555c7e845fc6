#!/bin/bash
# Accuracy run (the recipe's epochs, or the demo set's short schedule, with validation): Acc@1 + FPS; one process per device (--rank_size=N).
# The network is this folder's (models/<net>/); the same file in every folder (tools/new_model.py writes it).
# Usage: bash test/train_full_8p.sh [--data_path=DIR] [--batch_size=N] ... (--help); see ../README.md.
source "$(dirname "${BASH_SOURCE[0]}")/../../../test/common.sh"
model_launcher full 8p "$@"
