"""Runs the FileCheck-style pass tests in tests/filecheck/ (MLIR's and xDSL's lit tests, minus lit).

Each `.mlir` (or `.irk`) file there holds IR (or DSL) and `// RUN:` (`# RUN:`) lines; every
RUN line is one test. A RUN
line is a shell pipeline run with `bash -o pipefail`, after these substitutions:

    %s          the test file's absolute path
    %S          the directory of the test file
    %t          a path prefix in a fresh temporary directory of this RUN line
    %%          a literal %
    irkit-opt   the irkit-opt next to sys.executable (the venv's), else the one on PATH
    filecheck   likewise (the PyPI `filecheck` package); `FileCheck` is an alias

A RUN line ending in a backslash continues on the next RUN line. A non-zero exit of any
command in the pipeline fails the test with the command, its stdout and its stderr.
RUN lines are independent (each has its own %t); the selected ones are started together
on a pool of os.cpu_count() workers, since each is mostly irkit-opt's start-up time.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE / "filecheck"
REPO = HERE.parent
TOOLS = {"irkit-opt": "irkit-opt", "filecheck": "filecheck", "FileCheck": "filecheck"}
TIMEOUT_S = 300

_RUN = re.compile(r"^\s*(?://|#)\s*RUN:\s?(.*)$")  # `//` in .mlir, `#` in .irk
_TOOL = re.compile(r"(?<![\w./%-])(" + "|".join(map(re.escape, TOOLS)) + r")(?![\w./-])")
_SUBST = re.compile(r"%(%|s|S|t)")
_PREFIX = re.compile(r"--check-prefix(?:es)?[= ]\s*([\w,-]+)")


@dataclass(frozen=True)
class RunLine:
    path: Path
    line: int
    command: str

    @property
    def id(self) -> str:
        rel = self.path.relative_to(ROOT).as_posix()
        prefixes = _PREFIX.findall(self.command)
        return f"{rel}:{self.line}" + (f"[{','.join(prefixes)}]" if prefixes else "")


def find_test_files() -> list[Path]:
    return sorted([*ROOT.rglob("*.mlir"), *ROOT.rglob("*.irk")])


def run_lines(path: Path) -> list[RunLine]:
    """The RUN lines of a file, continuations (a trailing backslash) joined."""
    out: list[RunLine] = []
    pending: tuple[int, str] | None = None
    for k, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        m = _RUN.match(text)
        if m is None:
            if pending is not None:
                raise ValueError(f"{path}:{pending[0]}: RUN line ends in '\\' but no RUN line follows")
            continue
        body = m.group(1).rstrip()
        start, prev = pending if pending is not None else (k, "")
        if body.endswith("\\"):
            pending = (start, prev + body[:-1] + " ")
            continue
        pending = None
        out.append(RunLine(path, start, (prev + body).strip()))
    if pending is not None:
        raise ValueError(f"{path}:{pending[0]}: RUN line ends in '\\' at the end of the file")
    return out


def tool(name: str) -> str:
    """The executable `name` next to sys.executable (the venv's bin), else on PATH."""
    exe = TOOLS[name]
    candidate = Path(sys.executable).parent / exe
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(exe)
    if found is None:
        pytest.fail(f"{exe} is neither next to {sys.executable} nor on PATH; install irkit and the "
                    f"`filecheck` package into this environment")
    return found


def expand(run: RunLine, tmp: Path) -> str:
    """The RUN line as a bash command: tools resolved, %-substitutions made."""
    command = _TOOL.sub(lambda m: shlex.quote(tool(m.group(1))), run.command)
    values = {"%": "%", "s": shlex.quote(str(run.path)), "S": shlex.quote(str(run.path.parent)),
              "t": shlex.quote(str(tmp / "t"))}
    return _SUBST.sub(lambda m: values[m.group(1)], command)


def _collect() -> list:
    params = [pytest.param(r, id=r.id) for f in find_test_files() for r in run_lines(f)]
    # An empty parametrization would be reported as skipped: make it a failure instead.
    return params or [pytest.param(None, id="no-RUN-lines-found")]


def test_there_are_filecheck_tests() -> None:
    files = find_test_files()
    assert files, f"no .mlir files under {ROOT}"
    without = [f.relative_to(ROOT).as_posix() for f in files if not run_lines(f)]
    assert not without, f"test files without a RUN line (they would test nothing): {without}"


def execute(run: RunLine, tmp: Path) -> tuple[str, subprocess.CompletedProcess | None]:
    """Run one RUN line; (the command, its process, or None when it timed out)."""
    command = expand(run, tmp)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    try:
        proc = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return command, None
    return command, proc


@pytest.fixture(scope="session")
def started(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Every selected RUN line, started on a thread pool: RunLine -> Future of execute()."""
    runs = [item.callspec.params["run"] for item in request.session.items
            if getattr(item, "originalname", None) == "test_run_line"
            and isinstance(item.callspec.params.get("run"), RunLine)]
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        futures: dict[RunLine, Future] = {r: pool.submit(execute, r, tmp_path_factory.mktemp("run"))
                                          for r in runs}
        yield futures
        for f in futures.values():
            f.cancel()


@pytest.mark.parametrize("run", _collect())
def test_run_line(run: RunLine | None, started: dict, tmp_path: Path) -> None:
    assert run is not None, f"no RUN lines found in any .mlir file under {ROOT}"
    future = started.get(run)
    command, proc = future.result() if future is not None else execute(run, tmp_path)
    if proc is None:
        pytest.fail(f"{run.path}:{run.line}: RUN line timed out after {TIMEOUT_S} s\n$ {command}",
                    pytrace=False)
    if proc.returncode != 0:
        pytest.fail(f"{run.path}:{run.line}: RUN line failed (exit {proc.returncode})\n"
                    f"RUN: {run.command}\n$ {command}\n"
                    f"--- stderr ---\n{proc.stderr.rstrip()}\n"
                    f"--- stdout ---\n{proc.stdout.rstrip()}", pytrace=False)
