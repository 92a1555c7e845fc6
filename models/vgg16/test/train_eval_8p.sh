#!/bin/bash
# Evaluation of --pth_path (default test/output/<device_id>/model_best.pth.tar): Acc@1; one process per device (--rank_size=N).
# The network is this folder's (models/<net>/); the same file in every folder (tools/new_model.py writes it).
# Usage: bash test/train_eval_8p.sh [--data_path=DIR] [--batch_size=N] ... (--help); see ../README.md.
source "$(dirname "${BASH_SOURCE[0]}")/../../../test/common.sh"
model_launcher eval 8p "$@"
