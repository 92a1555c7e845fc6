"""vgg16's folder entry point, as the seed's Vgg16_ID1630_for_PyTorch's main.py:

    python models/vgg16/main.py ARGS   =   python main.py --arch=vgg16 ARGS

from any directory. Everything else is the shared engine (see README.md in this folder).
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import main  # noqa: E402  (the repository's main.py)

FIXED = ['--arch=vgg16']

if __name__ == "__main__":
    sys.exit(main.main(FIXED + sys.argv[1:]))
