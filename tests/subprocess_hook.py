"""What the tests' subprocesses run at start-up: conftest's ``subprocess_env`` puts a
``sitecustomize.py`` that calls ``install()`` on PYTHONPATH, so that every Python process of
a job -- a launcher, torchrun's agent, the workers it spawns, the bash launchers' trainer --
knows the test-only nets without a wrapper script.

The nets are registered right after ``classify.cli`` (main.py's flags, which import
``models``) is first imported, not at start-up: processes that never build a model
(torchrun's agent, the bash launchers' ``python -c`` helpers) do not pay for importing
torchvision. Standard library only at import time, for the same reason. (Not right after
``models`` itself: ``tests.tinynet`` imports ``models``, and would then be asked to register
while half-imported.)

``DIST_TEST_FAIL_RANK=N`` (test_distributed.py): the worker with ``RANK=N`` raises in its
third backward. ``DIST_TEST_KILL_AT=R:N`` (test_cluster.py): the worker with ``RANK=R`` of
the first worker generation (``TORCHELASTIC_RESTART_COUNT=0``) kills itself with SIGKILL in
its N-th backward. ``DIST_TEST_SLOW=S``: every worker sleeps S seconds per backward;
``DIST_TEST_SLOW_ALONE=S``: only a worker alone in its job (``WORLD_SIZE=1``; a job that
another node joins while it trains).
"""

import importlib.abc
import importlib.machinery
import os
import sys


def install() -> None:
    sys.meta_path.insert(0, _After(TRIGGER))


TRIGGER = "classify.cli"


class _After(importlib.abc.MetaPathFinder):
    """Finds module ``name`` the usual way, and runs ``_register`` once it has been executed."""

    def __init__(self, name):
        self.name = name

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # once
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            exec_module = spec.loader.exec_module

            def exec_then_register(module):
                exec_module(module)
                _register()

            spec.loader.exec_module = exec_then_register
        return spec


def _register() -> None:
    from tests import tinynet

    tinynet.register_flat()
    _cluster_faults()
    rank = os.environ.get("RANK")
    if rank is not None and os.environ.get("DIST_TEST_FAIL_RANK") == rank:  # raise in the 3rd backward
        import torch

        backward, calls = torch.Tensor.backward, []

        def failing_backward(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == 3:
                raise RuntimeError("injected failure")
            return backward(self, *args, **kwargs)

        torch.Tensor.backward = failing_backward


def _cluster_faults() -> None:
    env = os.environ
    kill = env.get("DIST_TEST_KILL_AT", "").split(":")
    doomed = len(kill) == 2 and env.get("RANK") == kill[0] and env.get("TORCHELASTIC_RESTART_COUNT") == "0"
    slow = float(env.get("DIST_TEST_SLOW") or 0)
    if env.get("WORLD_SIZE") == "1":
        slow = slow or float(env.get("DIST_TEST_SLOW_ALONE") or 0)
    if not (doomed or slow):
        return
    import signal
    import time

    import torch

    backward, calls = torch.Tensor.backward, []

    def faulty_backward(self, *args, **kwargs):
        calls.append(1)
        if doomed and len(calls) == int(kill[1]):
            os.kill(os.getpid(), signal.SIGKILL)
        if slow:
            time.sleep(slow)
        return backward(self, *args, **kwargs)

    torch.Tensor.backward = faulty_backward
