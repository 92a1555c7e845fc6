#!/bin/bash
# Inception-ResNet-v2 (InceptionResNetV2_ID1779_for_PyTorch): evaluation of --pth_path (default test/output/<device_id>/model_best.pth.tar): Acc@1; one process per device (--rank_size=N).
# Usage: bash test/train_eval_8p.sh [--data_path=DIR] [--batch_size=N] ... (--help); see ../README.md.
source "$(dirname "${BASH_SOURCE[0]}")/../../../test/common.sh"
model_launcher inception_resnet_v2 InceptionResNetV2_ID1779_for_PyTorch eval 8p "$@"
