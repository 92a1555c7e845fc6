"""googlenet's folder entry point, as the seed's GoogleNet_ID1623's main-8p.py:

    python models/googlenet/main_8p.py ARGS   =   python main_8p.py --arch=googlenet --log-format=torchvision ARGS

from any directory. Everything else is the shared engine (see README.md in this folder).
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import main_8p  # noqa: E402  (the repository's main_8p.py)

FIXED = ['--arch=googlenet', '--log-format=torchvision']

if __name__ == "__main__":
    sys.exit(main_8p.run(FIXED + sys.argv[1:]))
