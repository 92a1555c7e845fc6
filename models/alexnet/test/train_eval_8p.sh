#!/bin/bash
# AlexNet (AlexNet_ID2663_for_PyTorch): evaluation of --pth_path (default test/output/<device_id>/model_best.pth.tar): Acc@1; one process per device (--rank_size=N).
# Usage: bash test/train_eval_8p.sh [--data_path=DIR] [--batch_size=N] ... (--help); see ../README.md.
source "$(dirname "${BASH_SOURCE[0]}")/../../../test/common.sh"
model_launcher alexnet AlexNet_ID2663_for_PyTorch eval 8p "$@"
