"""googlenet's folder entry point, as the seed's Googlenet_ID0447_for_PyTorch's train.py (torchvision references) and GoogleNet_ID1623's main.py:

    python models/googlenet/main.py ARGS   =   python main.py --arch=googlenet --log-format=torchvision ARGS

from any directory. Everything else is the shared engine (see README.md in this folder).
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import main  # noqa: E402  (the repository's main.py)

FIXED = ['--arch=googlenet', '--log-format=torchvision']

if __name__ == "__main__":
    sys.exit(main.main(FIXED + sys.argv[1:]))
