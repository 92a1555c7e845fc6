"""inception_resnet_v2's folder entry point, as the seed's InceptionResNetV2_ID1779_for_PyTorch's train_1p.py:

    python models/inception_resnet_v2/main.py ARGS   =   python main.py --arch=inception_resnet_v2 --log-format=prefixed ARGS

from any directory. Everything else is the shared engine (see README.md in this folder).
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import main  # noqa: E402  (the repository's main.py)

FIXED = ['--arch=inception_resnet_v2', '--log-format=prefixed']

if __name__ == "__main__":
    sys.exit(main.main(FIXED + sys.argv[1:]))
