"""inception_resnet_v2's folder entry point, as the seed's InceptionResNetV2_ID1779's train_8p.py:

    python models/inception_resnet_v2/main_8p.py ARGS   =   python main_8p.py --arch=inception_resnet_v2 --log-format=prefixed ARGS

from any directory. Everything else is the shared engine (see README.md in this folder).
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import main_8p  # noqa: E402  (the repository's main_8p.py)

FIXED = ['--arch=inception_resnet_v2', '--log-format=prefixed']

if __name__ == "__main__":
    sys.exit(main_8p.run(FIXED + sys.argv[1:]))
