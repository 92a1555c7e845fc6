#!/bin/bash
# Ascend NPU environment, as the ModelZoo seeds' test/env_npu.sh set it. The launcher scripts
# source this file only when the device is npu (--device=npu, or auto with torch_npu
# importable); source it yourself before a manual `python main.py --device npu` run:
#     source test/env_npu.sh
# Every variable below keeps a value you exported before sourcing.

# CANN: the toolkit's set_env.sh (or the nnae runtime's) puts the Ascend libraries on the paths.
CANN_INSTALL_PATH_CONF=/etc/Ascend/ascend_cann_install.info
if [ -f "$CANN_INSTALL_PATH_CONF" ]; then
    CANN_INSTALL_PATH=$(grep Install_Path "$CANN_INSTALL_PATH_CONF" | cut -d "=" -f 2)
else
    CANN_INSTALL_PATH=${ASCEND_INSTALL_PATH:-/usr/local/Ascend}
fi
if [ -f "$CANN_INSTALL_PATH/ascend-toolkit/set_env.sh" ]; then
    # shellcheck disable=SC1091
    source "$CANN_INSTALL_PATH/ascend-toolkit/set_env.sh"
elif [ -f "$CANN_INSTALL_PATH/nnae/set_env.sh" ]; then
    # shellcheck disable=SC1091
    source "$CANN_INSTALL_PATH/nnae/set_env.sh"
fi

# Logging: errors only, no event log, not to stdout (the training log stays readable).
export ASCEND_GLOBAL_LOG_LEVEL=${ASCEND_GLOBAL_LOG_LEVEL:-3}
export ASCEND_GLOBAL_EVENT_ENABLE=${ASCEND_GLOBAL_EVENT_ENABLE:-0}
export ASCEND_SLOG_PRINT_TO_STDOUT=${ASCEND_SLOG_PRINT_TO_STDOUT:-0}
# Host-side task queue (operator dispatch in a separate thread) and fused view-copy ops.
export TASK_QUEUE_ENABLE=${TASK_QUEUE_ENABLE:-1}
export COMBINED_ENABLE=${COMBINED_ENABLE:-1}
# Compiled-operator cache, reused across runs.
export ACL_OP_COMPILER_CACHE_MODE=${ACL_OP_COMPILER_CACHE_MODE:-enable}
# HCCL (collectives between NPUs): no IP whitelist, this host's first address, generous
# connect timeout for 8 processes building the ring, and async error handling so that a
# dead rank ends the job instead of hanging it (issue 4).
export HCCL_WHITELIST_DISABLE=${HCCL_WHITELIST_DISABLE:-1}
if [ -z "${HCCL_IF_IP:-}" ] && command -v hostname >/dev/null 2>&1; then
    HCCL_IF_IP=$(hostname -I 2>/dev/null | awk '{print $1}')
    [ -n "$HCCL_IF_IP" ] && export HCCL_IF_IP || unset HCCL_IF_IP
fi
export HCCL_CONNECT_TIMEOUT=${HCCL_CONNECT_TIMEOUT:-1200}
export HCCL_ASYNC_ERROR_HANDLING=${HCCL_ASYNC_ERROR_HANDLING:-1}
