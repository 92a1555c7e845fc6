"""``python tests/run_main.py ARGS``: main.py with the test-only ``tinynet`` registered
(for tests that need a real subprocess: exit codes, stderr, signals)."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests import tinynet  # noqa: E402

tinynet.register()

import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main.main())
