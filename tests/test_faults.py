"""The fault catalogue (issue #26): hostile inputs and faults, table-driven.

One row per case: the command (main.py or a tool), its exit code, the one line it must print
(``{...}`` placeholders filled per row), and what must still be intact afterwards. No row may
print a traceback or hang: in-process rows would raise, real processes are killed at a timeout
(``Background``). Rows run in-process where that proves the same thing (``main.main``, a tool's
``main``); the rows about signals run a real process. The disk-full row needs a real small
filesystem (a tmpfs: root only); the translation is also unit-tested by failing the write
in-process (``test_full_disk_translation``).
"""

import errno
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

import pytest
import torch

import main
from classify.checkpoint import CheckpointManager, Progress, TrainingObjects, mount_point
from classify.errors import StorageError
from tests.conftest import start_ahead, start_main, write_image_folder

wds = pytest.importorskip("webdataset")
from tools import export_onnx, make_demo_data, make_shards  # noqa: E402  (after the importorskip)

PRECIOUS = b"an earlier run's checkpoint"
STALL = "case $f in *index.json) cat $f;; *) echo $$ >> {tmp}/pids; exec sleep 1000;; esac"


def _members(tar: Path):
    return list(wds.WebDataset(str(tar), shardshuffle=False))


def _rewrite(tar: Path, change: Callable[[dict], dict]) -> None:
    """Rewrite the shard ``tar`` with ``change`` applied to its first member."""
    members = _members(tar)
    with wds.TarWriter(str(tar), encoder=False) as w:
        for i, m in enumerate(members):
            m = {k: v for k, v in m.items() if k in ("__key__", "jpg", "cls")}
            w.write(change(m) if i == 0 else m)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The data the rows read: a good tree, its broken copies, shards and their broken copies."""
    root = tmp_path_factory.mktemp("faults")
    good = write_image_folder(root / "good", 4, 2, size=32)  # 12 train / 6 val, 3 classes
    for name, broken in (("val_empty", 6), ("val_bad", 2)):
        shutil.copytree(good, root / name)
        for path in sorted((root / name / "val").rglob("*.jpg"))[:broken]:
            path.write_bytes(b"")
    shutil.copytree(good, root / "loop")
    os.symlink(".", root / "loop" / "train" / "red" / "loop")
    assert make_shards.main([str(good), str(root / "wds"), "--per-shard", "4", "--workers", "1"]) == 0
    assert make_shards.main([str(good), str(root / "wds1"), "--per-shard", "100", "--workers", "1"]) == 0
    for name, label in (("wds_label99", b"99"), ("wds_label_neg", b"-1")):
        shutil.copytree(root / "wds1", root / name)
        _rewrite(root / name / "train-000000.tar", lambda m, label=label: dict(m, cls=label))
    shutil.copytree(root / "wds1", root / "wds_fewer")
    index = json.loads((root / "wds_fewer" / "index.json").read_text())
    index["train"][0]["count"] = 4  # the shard holds 12
    (root / "wds_fewer" / "index.json").write_text(json.dumps(index))
    shutil.copytree(root / "wds1", root / "wds_cut")
    cut = root / "wds_cut" / "train-000000.tar"
    cut.write_bytes(cut.read_bytes()[:cut.stat().st_size // 2])
    shutil.copytree(root / "wds1", root / "wds_bad_index")
    index = json.loads((root / "wds_bad_index" / "index.json").read_text())
    index["val"][0]["count"] = "six"
    (root / "wds_bad_index" / "index.json").write_text(json.dumps(index))
    shutil.copytree(good, root / "fifo")
    os.mkfifo(root / "fifo" / "train" / "red" / "pipe.jpg")
    (root / "a_file").write_text("x")
    return root


@dataclass
class Row:
    name: str
    tool: str  # main | export_onnx | make_demo_data | make_shards
    argv: List[str]
    code: int
    line: str  # the one line (exact, placeholders filled); stderr, or stdout for a notice of a run that succeeds
    stream: str = "err"
    intact: Optional[Callable] = None  # (paths) -> None: asserts what must still be there
    how: str = "inproc"  # inproc | SIGTERM | SIGINT (a real process, signalled once it reads)
    train: bool = True  # main.py rows: append the tiny run's flags
    hole: bool = True  # one of the holes (else found by the sweep)
    timeout: int = 300  # seconds before the row counts as a hang


def _precious_kept(p):
    assert (p["out"] / "checkpoint.pth.tar").read_bytes() == PRECIOUS
    assert sorted(os.listdir(p["out"])) == ["checkpoint.pth.tar"]


def _no_temp_files(p):
    left = [n for n in os.listdir(p["out"]) if n.endswith(".tmp")] if p["out"].is_dir() else []
    assert not left, left


def _pipe_ended_and_saved(epoch: int, step: int):
    def check(p):
        """The stalled command was ended (no `sleep 1000` left) and the stop's checkpoint is readable."""
        pids = [int(x) for x in (p["tmp"] / "pids").read_text().split()]
        deadline = time.time() + 10
        while any(_alive(pid) for pid in pids) and time.time() < deadline:
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in pids), pids
        state = torch.load(p["out"] / "checkpoint.pth.tar", weights_only=True)
        assert (state["epoch"], state["step"]) == (epoch, step)
    return check


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return open(f"/proc/{pid}/stat").read().split()[2] != "Z"


def _shards_readable_by_others(p):
    tars = sorted((p["tmp"] / "wds").glob("*.tar"))
    assert tars and all(t.stat().st_mode & 0o777 == 0o644 for t in tars), [oct(t.stat().st_mode) for t in tars]


def _summary_counts_val(p):
    summary = json.loads((p["out"] / "summary.json").read_text())
    assert (summary["val_images"], summary["val_bad_images"]) == (4, 2)
    record = json.loads((p["out"] / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["val_bad_images"] == 2


def _file_kept(p):
    assert (p["world"] / "a_file").read_text() == "x"


STALLED = "pipe:f={world}/wds/train-{{000000..000002}}.tar ; " + STALL
STALLED_VAL = ("pipe:f={world}/wds/train-{{000000..000002}}.tar ; "
               "case $f in *train-*) cat $f;; *index.json) cat $f;; *) echo $$ >> {tmp}/pids; exec sleep 1000;; esac")
FAILING = ("pipe:f={world}/wds/train-{{000000..000002}}.tar ; "
           "case $f in *index.json) cat $f;; *) echo 'no such object' >&2; exit 3;; esac")
REFUSED = "main.py: error: argument {flag}: '{value}' is not a finite number; see --help"
FLAGS = {"--lr": "--lr/--learning-rate/--learning_rate", "--momentum": "--momentum/--mom",
         "--wd": "--wd/--weight-decay/--weight_decay", "--max-bad-images": "--max-bad-images/--max_bad_images",
         "--mixup-alpha": "--mixup-alpha/--mixup_alpha/--mixup", "--data-timeout": "--data-timeout/--data_timeout"}

CATALOGUE = [
    # 1. a read that never returns: SIGTERM/SIGINT end the run within seconds; --data-timeout names the shard
    Row("stalled-pipe-sigterm", "main", [STALLED, "--stop-step-num", "1"], 143,
        "=> stopped by SIGTERM at epoch 0 step 0; checkpoint saved to {out}/checkpoint.pth.tar; continue with "
        "--resume auto", how="SIGTERM", intact=_pipe_ended_and_saved(0, 0)),
    Row("stalled-pipe-sigint", "main", [STALLED, "--stop-step-num", "1"], 130,
        "=> stopped by SIGINT at epoch 0 step 0; checkpoint saved to {out}/checkpoint.pth.tar; continue with "
        "--resume auto", how="SIGINT", intact=_pipe_ended_and_saved(0, 0)),
    Row("stalled-pipe-data-timeout", "main", [STALLED, "--data-timeout", "1", "--stop-step-num", "1"], 2,
        "error: shard 'pipe:f={world}/wds/train-00000?.tar ; " + STALL + "' gave no data for 1 s (--data-timeout); its "
        "command is stuck: check it, or raise --data-timeout for storage that slow", intact=_no_temp_files),
    # 2. float flags and nan/inf
    Row("lr-nan", "main", ["{world}/good", "--lr", "nan"], 2, REFUSED.format(flag=FLAGS["--lr"], value="nan"),
        intact=_precious_kept),
    Row("lr-inf", "main", ["{world}/good", "--lr", "inf"], 2, REFUSED.format(flag=FLAGS["--lr"], value="inf"),
        intact=_precious_kept),
    # 3. unreadable validation images: counted, the --max-bad-images rule, none readable is an error
    Row("val-none-readable", "main", ["{world}/val_empty", "--epochs", "1"], 2,
        "error: none of the 6 validation images could be read; fix or remove the bad files (or train without "
        "validation: --no-val)", intact=_no_temp_files),
    Row("val-too-many-unreadable", "main", ["{world}/val_bad", "--epochs", "1"], 2,
        "error: 2 of 6 validation images read were unreadable (more than --max-bad-images 0.01); fix or remove the "
        "bad files, or raise --max-bad-images", intact=_no_temp_files),
    Row("val-unreadable-counted", "main", ["{world}/val_bad", "--epochs", "1", "--max-bad-images", "0.5"], 0,
        "=> validation: skipped 2 unreadable images", stream="out", intact=_summary_counts_val),
    # 4. disk full while saving a checkpoint (test_full_disk_row: a real tmpfs)
    # 5. a symlink loop in a class folder: skipped with a notice, the run and --check agree
    Row("symlink-loop", "main", ["{world}/loop", "--epochs", "1", "--no-index-cache"], 0,
        "=> skipped '{world}/loop/train/red/loop': a symbolic link back to '{world}/loop/train/red' (a loop); its "
        "images are read once, from there", stream="out"),
    Row("symlink-loop-check", "main", ["{world}/loop", "--check"], 0, "", stream="none", train=False, hole=False),
    # 6. a class label outside the class list, read from a shard
    Row("shard-label-99", "main", ["{world}/wds_label99", "--epochs", "1"], 2,
        "error: shard '{world}/wds_label99/train-000000.tar' member 'train00000000' has class 99, outside the 3 "
        "classes of index.json (0..2); rebuild the shards with tools/make_shards.py", intact=_no_temp_files),
    Row("shard-label-negative", "main", ["{world}/wds_label_neg", "--epochs", "1"], 2,
        "error: shard '{world}/wds_label_neg/train-000000.tar' member 'train00000000' has class -1, outside the 3 "
        "classes of index.json (0..2); rebuild the shards with tools/make_shards.py", intact=_no_temp_files),
    # 7. tools and a user's path mistake
    Row("export-onnx-output-under-file", "export_onnx", ["-a", "tinynet", "--output", "{world}/a_file/x.onnx"], 1,
        "error: '{world}/a_file' already exists and is not a folder", intact=_file_kept),
    Row("make-demo-data-into-file", "make_demo_data", ["{world}/a_file"], 1,
        "error: '{world}/a_file/train/arrow': a part of this path is a file, not a folder", intact=_file_kept),
    # 8. index.json claiming fewer samples; make_shards' file mode; no object reprs in error lines
    Row("index-claims-fewer", "main", ["{world}/wds_fewer", "--epochs", "1", "-b", "2"], 2,
        "error: shard '{world}/wds_fewer/train-000000.tar' holds more than the 4 samples index.json says; rebuild "
        "index.json with tools/make_shards.py"),
    Row("make-shards-umask", "make_shards", ["{world}/good", "{tmp}/wds", "--per-shard", "4", "--workers", "1"], 0,
        "", stream="none", intact=_shards_readable_by_others),
    Row("failing-pipe-no-repr", "main", [FAILING, "--epochs", "1"], 2,
        "error: the command of shard 'pipe:f={world}/wds/train-00000?.tar ; case $f in *index.json) cat $f;; *) echo "
        "'no such object' >&2; exit 3;; esac' exited with status 3: no such object"),
    Row("truncated-shard-no-repr", "main", ["{world}/wds_cut", "--epochs", "1"], 2,
        "error: cannot read shard '{world}/wds_cut/train-000000.tar' (ReadError: unexpected end of data); check that "
        "it exists and is a complete tar file (tools/make_shards.py writes them)"),
    # the sweep: every float flag, every read that can block, every tool, every path written or walked
    *[Row(f"{flag[2:]}-{value}", "main", ["{world}/good", f"{flag}={value}"], 2,
          REFUSED.format(flag=FLAGS[flag], value=value), intact=_precious_kept, hole=False)
      for flag, value in (("--momentum", "nan"), ("--wd", "-inf"), ("--max-bad-images", "nan"),
                          ("--mixup-alpha", "inf"), ("--data-timeout", "inf"))],
    Row("loss-scale-inf", "main", ["{world}/good", "--loss-scale", "inf"], 2,
        "error: --loss-scale must be a number or 'dynamic', got 'inf'", intact=_precious_kept, hole=False),
    Row("lr-gamma-negative", "main", ["{world}/good", "--lr-gamma=-0.1"], 2, "error: --lr-gamma must be > 0, got -0.1",
        intact=_precious_kept, hole=False),
    Row("data-timeout-negative", "main", ["{world}/good", "--data-timeout", "-1"], 2,
        "error: --data-timeout must be >= 0 seconds (0: no limit), got -1", intact=_precious_kept, hole=False),
    Row("export-onnx-atol-nan", "export_onnx", ["-a", "tinynet", "--output", "{tmp}/x.onnx", "--atol", "nan"], 2,
        "export_onnx.py: error: argument --atol: 'nan' is not a finite number; see --help", hole=False),
    Row("stalled-val-pipe-data-timeout", "main", [STALLED_VAL, "--data-timeout", "1", "--epochs", "1"], 2,
        "error: shard 'pipe:f={world}/wds/val-00000?.tar ; case $f in *train-*) cat $f;; *index.json) cat $f;; *) echo "
        "$$ >> {tmp}/pids; exec sleep 1000;; esac' gave no data for 1 s (--data-timeout); its command is stuck: check it, or raise "
        "--data-timeout for storage that slow", hole=False),
    Row("stalled-index-data-timeout", "main", ["pipe:sleep 1000 # {world}/wds/train-{{000000..000002}}.tar",
                                               "--data-timeout", "1"], 2,
        "error: cannot read the shard index: shard 'pipe:sleep 1000 # {world}/wds/index.json' gave no data for 1 s "
        "(--data-timeout); its command is stuck: check it, or raise --data-timeout for storage that slow",
        intact=_precious_kept, hole=False),
    Row("stalled-val-pipe-sigterm", "main", [STALLED_VAL, "--epochs", "1"], 143,
        "=> stopped by SIGTERM at epoch 0 step 3; checkpoint saved to {out}/checkpoint.pth.tar; continue with "
        "--resume auto", how="SIGTERM", intact=_pipe_ended_and_saved(0, 3), hole=False),
    Row("index-json-bad-count", "main", ["{world}/wds_bad_index"], 2,
        "error: the shard index '{world}/wds_bad_index/index.json' is not valid (each val shard needs a name and a "
        "count >= 0, got {{\"name\": \"val-000000.tar\", \"count\": \"six\"}}); tools/make_shards.py writes index.json "
        "beside the shards", intact=_precious_kept, hole=False),
    Row("fifo-in-class-folder", "main", ["{world}/fifo", "--epochs", "1", "--no-index-cache"], 0,
        "=> skipped '{world}/fifo/train/red/pipe.jpg': not a regular file (a FIFO, socket or device)", stream="out",
        hole=False, timeout=60),
    Row("eval-none-readable", "main", ["{world}/val_empty", "-e"], 2,
        "error: none of the 6 validation images could be read; fix or remove the bad files (or train without "
        "validation: --no-val)", hole=False),
    Row("symlink-loop-index-cache", "main", ["{world}/loop", "--epochs", "1", "--index-cache", "{tmp}/cache"], 0,
        "=> skipped '{world}/loop/train/red/loop': a symbolic link back to '{world}/loop/train/red' (a loop); its "
        "images are read once, from there", stream="out", hole=False),
    Row("make-shards-out-under-file", "make_shards", ["{world}/good", "{world}/a_file/wds"], 1,
        "error: '{world}/a_file/wds': a part of this path is a file, not a folder", intact=_file_kept, hole=False),
    Row("make-demo-data-size-0", "make_demo_data", ["{tmp}/demo", "--size", "0"], 2, "error: --size must be at least 8",
        hole=False),
]
TOOLS = {"main": main.main, "export_onnx": export_onnx.main, "make_demo_data": make_demo_data.main,
         "make_shards": make_shards.main}
TINY = ["-a", "tinynet", "--workers", "0", "-b", "4", "--image-size", "32", "--val-resize", "36"]


def _paths(world: Path, tmp: Path) -> dict:
    return {"world": world, "tmp": tmp, "out": tmp / "out"}


def _fill(text: str, p: dict) -> str:
    return text.format(**{k: str(v) for k, v in p.items()})


def _argv(row: Row, p: dict) -> List[str]:
    argv = [_fill(a, p) for a in row.argv]
    if row.tool == "main" and row.train:
        argv += _tiny(argv)
        argv += ["--output-dir", str(p["out"])]
    return argv


def _tiny(argv: List[str]) -> List[str]:
    """The tiny run's flags that ``argv`` does not set itself."""
    out = []
    for flag, value in zip(TINY[::2], TINY[1::2]):
        if flag not in argv:
            out += [flag, value]
    return out


def _check(row: Row, p: dict, code: int, out: str, err: str) -> None:
    assert "Traceback" not in err, err
    lines = {"err": [x for x in err.splitlines() if x.strip()], "out": out.splitlines()}
    assert code == row.code, (code, err[-2000:])
    if row.stream == "err":
        assert len(lines["err"]) == 1, lines["err"]
    if row.stream != "none":
        import fnmatch

        wanted = _fill(row.line, p)
        assert any(fnmatch.fnmatchcase(x, wanted.replace("[", "[[]")) for x in lines[row.stream]), \
            (wanted, lines[row.stream][-5:])
    if row.intact is not None:
        row.intact(p)


@pytest.mark.parametrize("row", [pytest.param(r, marks=pytest.mark.timeout(r.timeout), id=r.name)
                                 for r in CATALOGUE if r.how == "inproc"])
def test_catalogue(row, world, tmp_path, capsys, monkeypatch):
    p = _paths(world, tmp_path)
    p["out"].mkdir()
    if row.intact is _precious_kept:
        (p["out"] / "checkpoint.pth.tar").write_bytes(PRECIOUS)
    monkeypatch.setenv("CLASSIFY_DEMO_DIR", str(tmp_path / "demo-cache"))
    try:
        code = TOOLS[row.tool](_argv(row, p))
    except SystemExit as e:  # an argparse usage error
        code = e.code
    captured = capsys.readouterr()
    _check(row, p, code, captured.out, captured.err)


SIGNALLED = [r for r in CATALOGUE if r.how != "inproc"]


@pytest.fixture(scope="module", autouse=True)
def _start_ahead(request):
    start_ahead(request, "signalled")


@pytest.fixture(scope="module")
def signalled(world, tmp_path_factory):
    """The signal rows, all started at once; a thread signals each once its command stalls (its
    pid is written) and gives it 30 s to end, beside the in-process rows. Returns a function that
    waits for the thread: {name: (paths, CompletedProcess or the failure)}."""
    started = {}
    for row in SIGNALLED:
        p = _paths(world, tmp_path_factory.mktemp(row.name))
        started[row.name] = (row, p, start_main(*_argv(row, p)))
    results = {}
    thread = threading.Thread(target=_signal_when_stalled, args=(started, results), daemon=True)
    thread.start()

    def wait():
        thread.join(timeout=360)
        return results

    yield wait
    for _, _, proc in started.values():
        proc.kill()


def _signal_when_stalled(started: dict, results: dict) -> None:
    pending = dict(started)
    deadline = time.time() + 240
    while pending and time.time() < deadline:
        for name, (row, p, proc) in list(pending.items()):
            if proc.proc.poll() is not None:  # ended before it stalled: a failure the row shows
                results[name] = (p, proc.result(1))
                del pending[name]
            elif (p["tmp"] / "pids").exists():
                time.sleep(1)  # stalled in the read
                os.kill(proc.proc.pid, getattr(signal, row.how))
                try:
                    results[name] = (p, proc.result(timeout=30))
                except BaseException as e:  # pytest.fail from Background: still running 30 s later
                    results[name] = (p, e)
                del pending[name]
        time.sleep(0.2)
    for name, (row, p, proc) in pending.items():
        proc.kill()
        results[name] = (p, AssertionError(f"{name}: its command never stalled"))


@pytest.mark.timeout(400)
@pytest.mark.parametrize("row", SIGNALLED, ids=lambda r: r.name)
def test_catalogue_signal(row, signalled):
    """A real process, stalled in a read; the signal must end it within seconds, with a checkpoint."""
    p, result = signalled().get(row.name, (None, AssertionError("no result within the time limit")))
    if isinstance(result, BaseException):
        pytest.fail(str(result))
    _check(row, p, result.returncode, result.stdout, result.stderr)


# ----------------------------------------------------------------------------- a full disk


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs at tmp_path/disk (root only: skipped where mounting is refused)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip() or done.returncode}); "
                    "test_full_disk_translation covers the translation")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill_disk(mnt: Path, leave: int = 8192) -> None:
    free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
    with open(mnt / "filler", "wb") as f:
        try:
            f.write(b"\0" * max(free - leave, 0))
        except OSError:
            pass


@pytest.mark.timeout(300)
def test_full_disk_row(world, small_disk, capsys):
    """Row ``disk-full``: `main.py DATA --resume auto --epochs 2` onto a full disk: exit 1, the one line,
    the previous checkpoint byte-identical, no temp file."""
    out = small_disk / "out"
    args = [str(world / "good"), *TINY, "--output-dir", str(out), "--epochs", "1"]
    assert main.main(args) == 0
    before = (out / "checkpoint.pth.tar").read_bytes()
    capsys.readouterr()
    _fill_disk(small_disk)
    code = main.main(args[:-1] + ["2", "--resume", "auto"])
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert code == 1 and err == [f"error: no space left on {small_disk} while saving {out}/checkpoint.pth.tar; "
                                 "the previous checkpoint (epoch 1, step 0) is intact"], err
    assert (out / "checkpoint.pth.tar").read_bytes() == before
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]


def test_full_disk_translation(tmp_path, monkeypatch):
    """The same translation with the write itself failing (ENOSPC), no mount needed; a second
    failure on the best model's copy names it and says the latest is saved."""
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    objects = TrainingObjects(model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0))
    ckpt = CheckpointManager(tmp_path, is_main=True)
    ckpt.save(objects, Progress(epoch=3, step=7))
    before = (tmp_path / "checkpoint.pth.tar").read_bytes()
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(os, "fdopen", lambda *a, **k: Full(real_fdopen(*a, **k)))
    with pytest.raises(StorageError) as e:
        ckpt.save(objects, Progress(epoch=4, step=0))
    assert str(e.value) == (f"no space left on {mount_point(tmp_path)} while saving {tmp_path}/checkpoint.pth.tar; "
                            "the previous checkpoint (epoch 3, step 7) is intact")
    assert e.value.exit_code == 1
    assert (tmp_path / "checkpoint.pth.tar").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pth.tar"]


def test_unlistable_folder_is_one_line(tmp_path, monkeypatch):
    """A folder the OS refuses to list (as root, permissions cannot show it: the refusal is made
    in-process) is a one-line DataError naming it, not a traceback."""
    from classify.data import index
    from classify.errors import DataError

    split = write_image_folder(tmp_path, 1, 1, size=8) / "train"
    real = os.scandir

    def scandir(path="."):
        if str(path).endswith("green"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real(path)

    monkeypatch.setattr(index.os, "scandir", scandir)
    with pytest.raises(DataError) as e:
        index.scan_split(split)
    assert str(e.value) == f"cannot scan '{split}': permission denied: '{split}/green'"


def test_every_float_flag_refuses_nan():
    """The sweep of one class: no parser of the suite has a float flag that takes nan/inf."""
    import argparse

    from tools import bench

    from classify.cli import finite_float

    for parser in (main.get_args_parser(), bench.get_args_parser(), export_onnx.get_args_parser()):
        floats = [a for a in parser._actions if a.type is float]
        assert not floats, [a.option_strings for a in floats]
        checked = [a for a in parser._actions if a.type is finite_float]
        for action in checked:
            for value in ("nan", "inf", "-inf"):
                with pytest.raises(argparse.ArgumentTypeError):
                    action.type(value)
    assert len([a for a in main.get_args_parser()._actions if a.type is finite_float]) >= 15
