#!/bin/bash
# VGG16 (Vgg16_ID1630_for_PyTorch): accuracy run (the recipe's epochs, or the demo set's short schedule, with validation): Acc@1 + FPS; one device.
# Usage: bash test/train_full_1p.sh [--data_path=DIR] [--batch_size=N] ... (--help); see ../README.md.
source "$(dirname "${BASH_SOURCE[0]}")/../../../test/common.sh"
model_launcher vgg16 Vgg16_ID1630_for_PyTorch full 1p "$@"
