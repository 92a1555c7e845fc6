#!/bin/bash
# Evaluation of --pth_path (default test/output/<device_id>/model_best.pth.tar) on val/; reports Acc@1.
# One device: python main.py.
# Usage: bash test/train_eval_1p.sh [--data_path=DIR] [--arch=NAME] [--batch_size=N] ... (--help); see README.md.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
launcher_main eval 1p "$@"
