#!/bin/bash
# Accuracy run: the recipe's epochs (or the demo set's short schedule) with validation; reports Acc@1 + FPS.
# One device: python main.py.
# Usage: bash test/train_full_1p.sh [--data_path=DIR] [--arch=NAME] [--batch_size=N] ... (--help); see README.md.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
launcher_main full 1p "$@"
