"""A network folder's main.py (the same in every models/<net>/; tools/new_model.py writes it):

    python models/<net>/main.py ARGS   =   python main.py --arch=<net> --log-format=<its seed's> ARGS

from any directory. <net> is this folder's name; its log format is its registry entry's
(models/<net>/__init__.py). Everything else is the shared engine: see README.md in this folder.
"""

import os
import sys

FOLDER = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(FOLDER)))  # the repository

import main  # noqa: E402  (the repository's main.py)
from models import get_model_entry  # noqa: E402

if __name__ == "__main__":
    net = get_model_entry(os.path.basename(FOLDER))
    sys.exit(main.main([f"--arch={net.name}", f"--log-format={net.log_format}", *sys.argv[1:]]))
