#!/bin/bash
# Ascend NPU environment for this folder's network (the scripts here source it when the device is npu):
#     source test/env_npu.sh
# The one definition is the top-level test/env_npu.sh.
source "$(dirname "${BASH_SOURCE[0]}")/../../../test/env_npu.sh"
