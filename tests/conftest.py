"""Shared fixtures and helpers: tiny ImageFolder trees, the test-only tinynet, the in-process
``main`` runner, the one-line-error assertion, metrics/summary readers, a free port; for the
subprocess tests, an environment that knows the test nets and subprocesses started ahead.

Everything the suite writes goes under pytest's tmp dirs: the session points the file-index
cache (``CLASSIFY_INDEX_CACHE``), the temp folder (``TMPDIR``) and the launcher scripts' output
root (``CLASSIFY_TEST_OUTPUT_ROOT``, test/common.sh) there, and fails if the checkout or /tmp
gained anything by the end (``pytest_sessionfinish``)."""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests import tinynet

ROOT = Path(__file__).resolve().parent.parent

# Tests send SIGINT (Ctrl-C) to the processes they start. A suite started in the background by a
# shell without job control (`bash .ci/run &` in a script, nohup) has SIGINT ignored, and every
# process it starts would inherit that and never see the signal: handle it again, as in the
# foreground (a handled signal is back to its default in a child).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

COLOURS = {"red": (200, 30, 30), "green": (30, 180, 40), "blue": (30, 40, 200)}


def write_image_folder(root: Path, train_per_class: int = 12, val_per_class: int = 7, size: int = 40,
                       classes=COLOURS) -> Path:
    """A learnable 3-class tree: the class is the dominant colour, plus noise."""
    rng = np.random.default_rng(0)
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        for name, colour in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                noise = rng.integers(-60, 60, (size, size, 3))
                pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:03d}.jpg", quality=90)
    return root


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("imagefolder"))


# ------------------------------------------------------------ nothing left behind

SYSTEM_TMP = Path(tempfile.gettempdir())  # before the session points TMPDIR at its own folder
NOT_OURS = {".git", "__pycache__", ".ruff_cache", ".pytest_cache"}  # caches, and git's own files


def checkout_files() -> set:
    """Every file and folder of the checkout (relative paths), but caches, .git and .venv*."""
    found = set()
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in NOT_OURS and not d.startswith(".venv")]
        rel = Path(folder).relative_to(ROOT)
        found.update(str(rel / name) for name in dirs + files)
    return found


def tmp_entries() -> set:
    """The names in the system temp folder."""
    return {p.name for p in SYSTEM_TMP.iterdir()}


def mentions(entry: Path, needle: bytes, limit: int = 1 << 20) -> bool:
    """Whether a file under ``entry`` (a file or folder, the first ``limit`` bytes of each) holds ``needle``."""
    files = [entry] if entry.is_file() else [p for p in entry.rglob("*") if p.is_file()]
    for path in files[:200]:
        try:
            with open(path, "rb") as f:
                if needle in f.read(limit):
                    return True
        except OSError:
            pass
    return False


def pytest_configure(config):
    if hasattr(config, "workerinput"):  # an xdist worker: the CPU's share of one of its processes
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(config.workerinput["workercount"])))
    else:
        config._leftovers_before = (checkout_files(), tmp_entries())


def pytest_sessionfinish(session, exitstatus):
    """Fails the session if it left anything in the checkout, or in /tmp. Other programs use /tmp
    too (other test sessions among them), so a new entry there counts as ours when a file in it
    names this session's tmp dir (a file index names its data folder, which is in there).
    Checked once, by the process that runs or distributes the tests, not by xdist's workers."""
    config = session.config
    if hasattr(config, "workerinput") or not hasattr(config, "_leftovers_before"):
        return
    files, tmp = config._leftovers_before
    base = str(config._tmp_path_factory.getbasetemp()).encode()
    ours = [SYSTEM_TMP / n for n in sorted(tmp_entries() - tmp)]
    left = sorted(checkout_files() - files) + [str(p) for p in ours if mentions(p, base)]
    if left:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        message = f"the test session left {len(left)} path(s) behind (tests write only under pytest's tmp dirs):"
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(message, red=True, bold=True)
            for path in left[:20]:
                reporter.write_line(f"    {path}", red=True)
        if session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session", autouse=True)
def _writes_under_tmp(tmp_path_factory):
    """For the whole session (this process and every subprocess it starts): the file indexes of
    the test trees (classify.data.index), temp files and the launcher scripts' outputs go under
    pytest's tmp dir, not to ~/.cache, /tmp or the checkout's test/output/."""
    base = tmp_path_factory.mktemp("session")
    (base / "tmp").mkdir()
    saved = {k: os.environ.get(k) for k in ("CLASSIFY_INDEX_CACHE", "TMPDIR", "CLASSIFY_TEST_OUTPUT_ROOT")}
    os.environ.update(CLASSIFY_INDEX_CACHE=str(base / "index-cache"), TMPDIR=str(base / "tmp"),
                      CLASSIFY_TEST_OUTPUT_ROOT=str(base / "checkout" / "test" / "output"))
    saved_tempdir, tempfile.tempdir = tempfile.tempdir, str(base / "tmp")
    yield base
    tempfile.tempdir = saved_tempdir
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def launcher_output(net: str = "") -> Path:
    """Where the launcher scripts write in this session: ``test/output`` (``models/<net>/test/output``
    for a per-model folder's scripts) under the session's tmp dir. test/common.sh takes it from
    ``CLASSIFY_TEST_OUTPUT_ROOT``; ``launcher_env`` sets it for ``net``."""
    root = Path(os.environ["CLASSIFY_TEST_OUTPUT_ROOT"]).parent.parent
    return root / "models" / net / "test" / "output" if net else root / "test" / "output"


def launcher_env(env=None, net: str = "") -> dict:
    """``env`` (default ours) with the output root of ``net``'s scripts (``launcher_output``)."""
    return dict(env or os.environ, CLASSIFY_TEST_OUTPUT_ROOT=str(launcher_output(net)))


@pytest.fixture(autouse=True)
def _tinynet():
    tinynet.register()
    yield


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No test reaches the network: torch.hub's download fails as on an offline machine (the
    tests of the download path replace it with their own fetcher)."""
    import urllib.error

    import torch.hub

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("no network in the tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
@pytest.fixture(scope="module", autouse=True)
def _start_ahead(request):
    """The module's ``START_AHEAD`` fixtures (names), started when the module starts
    (``start_ahead``)."""
    start_ahead(request, *getattr(request.module, "START_AHEAD", ()))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_one_line_error(code, err, *fragments, exit_code=2, out=None) -> str:
    """A user mistake's contract: exit ``exit_code``, one line ``error: ...`` on stderr holding
    every fragment, no traceback (and, when ``out`` is given, nothing on stdout). Returns the line."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == exit_code and len(lines) == 1, (code, err)
    assert lines[0].startswith("error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    if out is not None:
        assert out == "", out
    return lines[0]


def read_metrics(out: Path) -> list:
    """The records of ``out/metrics.jsonl``, one dict per line."""
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def read_summary(out: Path) -> dict:
    """``out/summary.json``."""
    return json.loads((Path(out) / "summary.json").read_text())


def tool_env(env=None) -> dict:
    """``env`` (default ours) for ``python tools/NAME.py``: the checkout importable, as
    ``pip install -r requirements.txt`` (which installs it in place) makes it for users."""
    path = os.pathsep.join(p for p in (str(ROOT), (env or os.environ).get("PYTHONPATH")) if p)
    return dict(env or os.environ, PYTHONPATH=path)


def start_main(*args, env=None, cwd=None) -> "Background":
    """``tests/run_main.py ARGS`` started in a subprocess (collect it with ``.result()``)."""
    # one thread per test process: tiny nets, and no oversubscription of a small CI machine
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", **(env or {}))
    return Background([sys.executable, ROOT / "tests" / "run_main.py", *args], env=full_env, cwd=cwd or ROOT)


@pytest.fixture
def run_main():
    """Run ``tests/run_main.py ARGS`` in a subprocess; returns CompletedProcess (text)."""

    def _run(*args, timeout=300, env=None, cwd=None):
        return start_main(*args, env=env, cwd=cwd).result(timeout)

    return _run


def run_in_process(capsys, *argv, run=None):
    """``run(argv)`` (default main.py's ``main``) in this process: (exit code, stdout, stderr);
    argparse's exit on a usage error is its code."""
    if run is None:
        import main

        run = main.main
    try:
        code = run([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def train_in_process(capsys, *argv) -> str:
    """Run main.main(argv) in this process; assert success and return its stdout."""
    code, out, err = run_in_process(capsys, *argv)
    assert code == 0, err
    return out


def tiny_args(data, out, *extra):
    """tinynet on ``data`` with a batch of 8, no loader workers, outputs in ``out``."""
    return [data, "-a", "tinynet", "-b", "8", "--workers", "0", "-p", "2", "--output-dir", out, *extra]


@pytest.fixture(scope="session")
def subprocess_env(tmp_path_factory, _writes_under_tmp):
    """Environment for subprocesses (jobs, bash launchers): every Python process started with it
    knows the test nets (tests/subprocess_hook.py, through a sitecustomize.py on PYTHONPATH);
    one OpenMP thread per process, unbuffered output."""
    hook = tmp_path_factory.mktemp("hook")
    (hook / "sitecustomize.py").write_text(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n"
                                           "from tests import subprocess_hook\nsubprocess_hook.install()\n")
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")


class Background:
    """A subprocess started now, collected later by ``result()``. Output goes to files (no pipe
    can fill up while nobody reads it); it runs in its own process group, killed as a whole
    on a timeout or by ``kill()``."""

    def __init__(self, cmd, env=None, cwd=ROOT):
        self.cmd = [str(c) for c in cmd]
        self._files = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(self.cmd, stdout=self._files[0], stderr=self._files[1], text=True,
                                     env=env, cwd=cwd, start_new_session=True)
        self._result = None

    def result(self, timeout=300) -> subprocess.CompletedProcess:
        if self._result is None:
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                pytest.fail(f"{' '.join(self.cmd)} still running after {timeout} s:\n{self._read(1)[-3000:]}")
            except BaseException:  # e.g. Ctrl-C: leave nothing running
                self.kill()
                raise
            self._result = subprocess.CompletedProcess(self.cmd, self.proc.returncode, self._read(0), self._read(1))
        return self._result

    def _read(self, i):
        self._files[i].seek(0)
        return self._files[i].read()

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def start_ahead(request, *names):
    """Instantiate now those of the module-scoped fixtures ``names`` that this module's
    selected tests use. Each starts a subprocess without waiting for it (``Background``), so
    they run side by side, and beside the in-process tests before the ones that collect them:
    a small machine's second core works instead of idling through process start-ups."""
    used = set()
    for item in request.session.items:
        if getattr(item, "module", None) is request.module:
            used.update(item.fixturenames)
    for name in names:
        if name in used:
            request.getfixturevalue(name)
