"""Write (or check) the ModelZoo-shaped files of a network's folder, models/<net>/.

    python tools/new_model.py NAME          # write models/NAME/main.py, [main_8p.py,] test/*.sh
    python tools/new_model.py --check       # every registered network's folder is up to date? (exit 1 if not)

These files are the same in every folder: they read the network from the folder's name and
its facts from its registry entry (``models/<net>/__init__.py``'s ``ENTRY``: the seed's network
name for the scripts' CaseName, the log format of its main.py, whether it has a main_8p.py), so
the only files a new network needs by hand are its ``__init__.py`` and its ``README.md``, and
its name in ``models.NETWORKS``. A folder's main_8p.py exists exactly when its entry says
``main_8p=True``; this tool removes one that should not be there.
"""

import argparse
import stat
import sys
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere

import models  # noqa: E402

__all__ = ["SCRIPTS", "folder_files", "stale", "write", "main"]

SCRIPTS = [f"train_{mode}_{scale}.sh" for mode in ("full", "performance", "eval") for scale in ("1p", "8p")]

_ENTRY_POINT = '''"""A network folder's {file} (the same in every models/<net>/; tools/new_model.py writes it):

    python models/<net>/{file} ARGS   =   python {file} --arch=<net> --log-format=<its seed's> ARGS

from any directory. <net> is this folder's name; its log format is its registry entry's
(models/<net>/__init__.py). Everything else is the shared engine: see README.md in this folder.
"""

import os
import sys

FOLDER = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(FOLDER)))  # the repository

import {module}  # noqa: E402  (the repository's {file})
from models import get_model_entry  # noqa: E402

if __name__ == "__main__":
    net = get_model_entry(os.path.basename(FOLDER))
    sys.exit({module}.{call}([f"--arch={{net.name}}", f"--log-format={{net.log_format}}", *sys.argv[1:]]))
'''

_WHAT = {"full": "accuracy run (the recipe's epochs, or the demo set's short schedule, with validation): Acc@1 + FPS",
         "performance": "throughput run (a bounded number of steps, no validation): FPS",
         "eval": "evaluation of --pth_path (default test/output/<device_id>/model_best.pth.tar): Acc@1"}
_SCALE = {"1p": "one device", "8p": "one process per device (--rank_size=N)"}

_SCRIPT = '''#!/bin/bash
# {what}; {scale}.
# The network is this folder's (models/<net>/); the same file in every folder (tools/new_model.py writes it).
# Usage: bash test/{script} [--data_path=DIR] [--batch_size=N] ... (--help); see ../README.md.
source "$(dirname "${{BASH_SOURCE[0]}}")/../../../test/common.sh"
model_launcher {mode} {scale_name} "$@"
'''

_ENV_NPU = '''#!/bin/bash
# Ascend NPU environment for this folder's network (the scripts here source it when the device is npu):
#     source test/env_npu.sh
# The one definition is the top-level test/env_npu.sh.
source "$(dirname "${BASH_SOURCE[0]}")/../../../test/env_npu.sh"
'''


def folder_files(name: str) -> Dict[str, str]:
    """models/<name>/'s generated files: path relative to the folder -> text."""
    entry = models.get_model_entry(name)
    files = {"main.py": _ENTRY_POINT.format(file="main.py", module="main", call="main")}
    if entry.main_8p:  # its seed's multi-device entry point
        files["main_8p.py"] = _ENTRY_POINT.format(file="main_8p.py", module="main_8p", call="run")
    for script in SCRIPTS:
        mode, scale = script[len("train_"):-len(".sh")].rsplit("_", 1)
        files[f"test/{script}"] = _SCRIPT.format(what=_WHAT[mode][0].upper() + _WHAT[mode][1:], scale=_SCALE[scale],
                                                 script=script, mode=mode, scale_name=scale)
    files["test/env_npu.sh"] = _ENV_NPU
    return files


def _unwanted(name: str, root: Path) -> List[Path]:
    """A main_8p.py in a folder whose entry has none."""
    path = root / "models" / name / "main_8p.py"
    return [path] if path.exists() and not models.get_model_entry(name).main_8p else []


def stale(name: str, root: Path = ROOT) -> List[str]:
    """The folder's generated files that are missing, differ or should not be there (paths from ``root``)."""
    folder = root / "models" / name
    bad = [f"models/{name}/{rel}" for rel, text in folder_files(name).items()
           if not (folder / rel).is_file() or (folder / rel).read_text() != text]
    return bad + [str(p.relative_to(root)) for p in _unwanted(name, root)]


def write(name: str, root: Path = ROOT) -> List[str]:
    """Write models/<name>/'s generated files (scripts executable); the paths written or removed."""
    folder = root / "models" / name
    changed = stale(name, root)
    for rel, text in folder_files(name).items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
        if rel.startswith("test/train_"):
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    for path in _unwanted(name, root):
        path.unlink()
    return changed


def _registered(name: str, root: Path) -> None:
    if name in models.list_models():
        return
    init = root / "models" / name / "__init__.py"
    first = ("" if init.is_file() else
             f"write {init.relative_to(root)} first (its build, recipes and ENTRY, as models/resnet50/ does), then ")
    sys.exit(f"error: '{name}' is not a registered network; {first}add \"{name}\" to NETWORKS in models/__init__.py")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="new_model.py", description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("name", nargs="?", help="the network (its folder models/NAME/ and its registry name)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; list the out-of-date files (of NAME, or of every registered network)")
    args = parser.parse_args(argv)
    if args.name is None and not args.check:
        parser.error("give a network NAME, or --check")
    if args.name is not None:
        _registered(args.name, ROOT)
    names = [args.name] if args.name else [n for n in models.list_models() if (ROOT / "models" / n).is_dir()]
    if args.check:
        bad = [path for name in names for path in stale(name)]
        for path in bad:
            print(f"out of date: {path} (python tools/new_model.py {path.split('/')[1]} rewrites it)")
        return 1 if bad else 0
    changed = write(args.name)
    print(f"models/{args.name}/: " + (f"wrote {', '.join(changed)}" if changed else "up to date"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
