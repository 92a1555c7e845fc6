"""The suite's own hygiene (conftest.py): everything a test or its subprocesses write lands
under pytest's tmp dir; the session-end check (``pytest_sessionfinish``) fails a session that
left files in the checkout or in /tmp."""

import subprocess
import sys
import tempfile
from pathlib import Path

from classify.data.index import default_index_cache
from tests.conftest import ROOT, launcher_env, launcher_output, mentions


def test_temp_files_indexes_and_launcher_outputs_go_under_pytest_tmp(tmp_path_factory):
    base = tmp_path_factory.getbasetemp()
    assert Path(tempfile.gettempdir()).is_relative_to(base)
    assert default_index_cache().is_relative_to(base)  # not ~/.cache, not /tmp
    assert launcher_output().is_relative_to(base) and launcher_output().parts[-2:] == ("test", "output")
    assert launcher_env(net="alexnet")["CLASSIFY_TEST_OUTPUT_ROOT"] == str(launcher_output("alexnet"))
    assert not launcher_output().is_relative_to(ROOT)
    # and a subprocess inherits all of it
    code = "import tempfile, os; print(tempfile.gettempdir()); print(os.environ['CLASSIFY_INDEX_CACHE'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert all(Path(line).is_relative_to(base) for line in out.splitlines())


def test_leftovers_in_tmp_are_told_apart_by_what_they_name(tmp_path):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    (ours / "sub").mkdir(parents=True)
    theirs.mkdir()
    (ours / "sub" / "index.npz").write_bytes(b"\x00 data root /tmp/pytest-of-x/pytest-7/data \x00")
    (theirs / "index.npz").write_bytes(b"data root /tmp/pytest-of-x/pytest-8/data")
    assert mentions(ours, b"/tmp/pytest-of-x/pytest-7")
    assert not mentions(theirs, b"/tmp/pytest-of-x/pytest-7")


def test_the_readme_command_is_the_quick_tier_and_ci_runs_both():
    """`python -m pytest -q` (the README's test command) leaves the slow tier out; .ci/run runs
    it and then the slow tier, so nothing goes untested in CI."""
    import shlex
    import tomllib

    addopts = shlex.split(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"])
    assert addopts[addopts.index("-m") + 1] == "not slow"
    commands = [line.split("#")[0].strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert commands.index("python -m pytest -q") < commands.index("python -m pytest -q -m slow")
