"""The sandbox for generated code (training/evaluation/sandbox.py): every program really runs in
a subprocess, and each test would fail without the rule it checks (a limit, a refusal, the
environment, the output cap, the estimator)."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from math import comb

import pytest

from training.evaluation.sandbox import (
    OUTPUT_CAP_BYTES,
    SandboxLimits,
    check_completions,
    pass_at_k,
    run_program,
)

QUICK = SandboxLimits(timeout_s=2.0)
ADD = "def add(a, b):\n    return a + b\n"
WRONG_ADD = "def add(a, b):\n    return a * b\n"
ADD_TESTS = "assert add(2, 3) == 5\nassert add(0, 0) == 0\n"


@pytest.fixture
def sandbox_parent(tmp_path, monkeypatch):
    """Sandbox directories are made under tmp_path, so `../x` from one lands where the test can
    look, and leftovers show."""
    parent = tmp_path / "sandboxes"
    parent.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(parent))
    return parent


def timed(program: str, limits: SandboxLimits = QUICK):
    start = time.monotonic()
    outcome = run_program(program, limits)
    return outcome, time.monotonic() - start


def test_a_correct_solution_passes_in_its_own_process_session_and_directory():
    outcome = run_program(
        ADD + ADD_TESTS + f"import os, sys\n"
        f"assert os.getpid() != {os.getpid()} and os.getsid(0) == os.getpid()\n"
        f"assert os.path.basename(os.getcwd()).startswith('sandbox-')\n"
        f"assert os.listdir('.') == ['program.py']\n"
        f"assert sys.flags.isolated and sys.flags.no_site and sys.flags.dont_write_bytecode\n"
        f"assert sys.stdin.read() == ''\n"
    )
    assert outcome.passed, outcome
    assert outcome.reason == "passed"


def test_a_wrong_solution_fails_with_the_assertion_and_its_line():
    outcome = run_program(WRONG_ADD + ADD_TESTS)
    assert not outcome.passed
    assert outcome.reason == "failed: AssertionError (line 3: assert add(2, 3) == 5)"


@pytest.mark.parametrize("program", ["import sys\nsys.exit(0)\n", "import os\nos._exit(0)\n"])
def test_leaving_before_the_tests_have_run_is_not_a_pass(program):
    outcome = run_program(ADD + program + ADD_TESTS)
    assert not outcome.passed
    assert outcome.reason.startswith("failed: "), outcome


def test_a_busy_loop_is_killed_at_the_wall_clock_timeout():
    outcome, elapsed = timed("while True:\n    pass\n")
    assert outcome.reason == "timeout"
    assert 2.0 <= elapsed < 6.0


def test_a_sleeping_program_is_killed_at_the_wall_clock_timeout():
    """Sleeping costs no CPU time: only the wall clock stops it (30 s without)."""
    outcome, elapsed = timed("import time\nfor _ in range(300):\n    time.sleep(0.1)\n")
    assert outcome.reason == "timeout"
    assert elapsed < 6.0


def test_the_cpu_limit_stops_a_busy_loop_before_the_wall_clock():
    outcome, elapsed = timed("while True:\n    pass\n", SandboxLimits(timeout_s=8, cpu_s=1))
    assert outcome.reason == "timeout: cpu"
    assert elapsed < 6.0


def test_a_fork_bomb_is_refused_at_its_first_fork():
    """(Were fork allowed, the children would sleep until the process group is killed.)"""
    outcome, elapsed = timed(
        "import os, time\nfor _ in range(8):\n    if os.fork() == 0:\n        time.sleep(60)\n"
    )
    assert outcome.reason == "refused: os.fork"
    assert elapsed < 2.0


def test_a_memory_hog_fails_with_memory():
    outcome = run_program("x = bytearray(4 << 30)\n")
    assert not outcome.passed
    assert outcome.reason == "memory"


def test_a_file_cannot_grow_past_the_file_size_limit():
    outcome = run_program(
        "open('big', 'wb').write(b'x' * (2 << 20))\n", SandboxLimits(file_size_mb=1)
    )
    assert outcome.reason.startswith("failed: OSError: [Errno 27] File too large"), outcome


@pytest.mark.parametrize("where", ["absolute", "relative"])
def test_writing_outside_its_directory_is_refused(sandbox_parent, tmp_path, where):
    target = {"absolute": str(tmp_path / "escape.txt"), "relative": "../escape.txt"}[where]
    outcome = run_program(f"open({target!r}, 'w').write('out')\n")
    assert outcome.reason == f"refused: open {target!r}"
    assert not (tmp_path / "escape.txt").exists()
    assert not (sandbox_parent / "escape.txt").exists()


def test_writing_inside_its_directory_works_and_the_directory_is_removed(sandbox_parent):
    outcome = run_program(
        "import os, shutil, tempfile\n"
        "open('ok.txt', 'w').write('ok')\n"
        "assert open('ok.txt').read() == 'ok'\n"
        "os.makedirs('sub/deeper')\n"
        "os.symlink('sub', 'link')\n"
        "open('link/via_link.txt', 'w').close()\n"
        "os.rename('ok.txt', 'sub/ok.txt')\n"
        "os.close(tempfile.mkstemp()[0])\n"
        "print('quiet', file=open(os.devnull, 'w'))\n"
        "shutil.rmtree('sub')\n"
    )
    assert outcome.passed, outcome
    assert list(sandbox_parent.iterdir()) == []


@pytest.mark.parametrize(
    ("program", "event"),
    [
        ("os.remove(VICTIM)", "os.remove"),
        ("os.rename(VICTIM, 'mine')", "os.rename"),
        ("os.chmod(VICTIM, 0o777)", "os.chmod"),
        ("os.mkdir(os.path.join(os.path.dirname(VICTIM), 'new'))", "os.mkdir"),
        ("os.symlink(os.path.dirname(VICTIM), 'door')", "os.symlink"),
        ("os.open(os.path.dirname(VICTIM), os.O_RDONLY)", "open"),
        ("os.chdir(os.path.dirname(VICTIM))", "os.chdir"),
    ],
)
def test_changing_anything_outside_its_directory_is_refused(tmp_path, program, event):
    """Removing, renaming, chmod, mkdir; a symlink or a directory fd (os.open) that would let a
    relative path lead outside; changing the directory relative paths are checked against."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    victim.chmod(0o600)
    outcome = run_program(f"import os\nVICTIM = {str(victim)!r}\n{program}\n")
    assert outcome.reason.startswith(f"refused: {event} "), outcome
    assert victim.read_text() == "keep"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert sorted(path.name for path in tmp_path.iterdir()) == ["victim.txt"]


def test_the_network_is_refused_and_the_listener_sees_no_connection():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        outcome = run_program(
            f"import socket\ns = socket.socket()\ns.connect(('127.0.0.1', {port}))\n"
        )
        listener.settimeout(0.5)
        with pytest.raises(TimeoutError):
            listener.accept()
    assert outcome.reason == "refused: socket.__new__"


def test_running_programs_is_refused(tmp_path):
    touched = tmp_path / "touched"
    system = run_program(f"import os\nos.system('touch {touched}')\n")
    assert system.reason == f"refused: os.system {f'touch {touched}'.encode()!r}"
    popen = run_program(f"import subprocess\nsubprocess.run(['touch', {str(touched)!r}])\n")
    assert popen.reason.startswith(
        "failed: ModuleNotFoundError: No module named '_posixsubprocess' (refused by the sandbox)"
    )
    assert not touched.exists()


@pytest.mark.parametrize(
    ("program", "reason"),
    [
        ("import os\nos.kill(1, 0)", "refused: os.kill 1"),
        ("import resource\nresource.setrlimit(resource.RLIMIT_CPU, (99, 99))", "refused: resource"),
        ("import gc\ngc.get_objects()", "refused: gc.get_objects"),
        ("import _xxsubinterpreters\n_xxsubinterpreters.create()", "refused: cpython.PyInterp"),
    ],
)
def test_signals_limits_introspection_and_sub_interpreters_are_refused(program, reason):
    """Signalling other processes, raising the limits, reaching the hook's closure through gc,
    running code in a sub-interpreter (which has no hook)."""
    outcome = run_program(program + "\n")
    assert outcome.reason.startswith(reason), outcome


@pytest.mark.parametrize("module", ["ctypes", "sqlite3", "readline", "_posixshmem"])
def test_modules_that_act_without_audit_events_cannot_be_imported(module):
    outcome = run_program(f"import {module}\n")
    assert "(refused by the sandbox)" in outcome.reason, outcome


def test_numpy_still_imports_without_ctypes():
    outcome = run_program("import numpy as np\nassert int(np.arange(4).sum()) == 6\n")
    assert outcome.passed, outcome


def test_native_code_the_program_wrote_cannot_be_loaded():
    outcome = run_program(
        "import importlib.util, math, os, shutil\n"
        "shutil.copy(math.__file__, 'copy.so')\n"
        "spec = importlib.util.spec_from_file_location('math', os.path.abspath('copy.so'))\n"
        "importlib.util.module_from_spec(spec)\n"
    )
    assert outcome.reason.startswith("refused: import "), outcome
    assert outcome.reason.endswith("/copy.so'")


def test_the_hook_survives_the_program_monkeypatching_what_it_uses(tmp_path):
    outcome = run_program(
        "import builtins, os, stat\n"
        "os.write = os._exit = os.stat = stat.S_ISDIR = lambda *args: None\n"
        "builtins.type = builtins.repr = lambda *args: str\n"
        f"open({str(tmp_path / 'escape.txt')!r}, 'w')\n"
    )
    assert outcome.reason.startswith("refused: open "), outcome
    assert not (tmp_path / "escape.txt").exists()


def test_the_environment_is_not_inherited(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
    outcome = run_program(
        "import os\n"
        "assert 'AWS_SECRET_ACCESS_KEY' not in os.environ\n"
        "assert os.environ['HOME'] == os.environ['TMPDIR'] == os.getcwd()\n"
    )
    assert outcome.passed, outcome


def test_endless_output_is_capped():
    outcome, elapsed = timed("while True:\n    print('x' * 1000)\n")
    assert outcome.reason == "timeout"
    assert outcome.output.startswith("x" * 1000)
    assert outcome.output.endswith("\n[output truncated]")
    assert len(outcome.output) == OUTPUT_CAP_BYTES + len("\n[output truncated]")
    assert elapsed < 6.0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_output_past_the_cap_is_dropped_as_it_arrives():
    """256 MiB printed: the evaluating process's peak memory barely moves. Measured in a fresh
    interpreter, by its own high-water mark (VmHWM, KiB; ru_maxrss would carry this process's
    peak across fork and exec)."""
    printer = "import sys\nfor _ in range(256):\n    sys.stdout.write('x' * (1 << 20))\n"
    evaluator = (
        "from training.evaluation.sandbox import run_program\n"
        "def peak():\n"
        "    status = open('/proc/self/status').read()\n"
        "    return int(status.split('VmHWM:')[1].split()[0])\n"
        "before = peak()\n"
        f"outcome = run_program({printer!r})\n"
        "print(outcome.reason, len(outcome.output), peak() - before)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", evaluator], capture_output=True, text=True, check=True
    )
    reason, kept, growth = result.stdout.split()
    assert reason == "passed"
    assert int(kept) == OUTPUT_CAP_BYTES + len("\n[output truncated]")
    assert int(growth) < 32 << 10


def test_pass_at_k_by_hand():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3, abs=1e-15)
    # 1 - C(7, 5) / C(10, 5) = 1 - 21/252
    assert pass_at_k(10, 3, 5) == pytest.approx(11 / 12, abs=1e-15)
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 8, 5) == 1.0  # n - c < k: any 5 of the 10 hold a correct one
    assert pass_at_k(1, 1, 1) == 1.0


def test_pass_at_k_matches_the_binomial_form():
    for n in range(1, 25):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = 1 - Fraction(comb(n - c, k), comb(n, k))
                assert pass_at_k(n, c, k) == pytest.approx(float(exact), abs=1e-12)
    exact = 1 - Fraction(comb(1000 - 30, 100), comb(1000, 100))  # C(1000, 100) > 1e139
    assert pass_at_k(1000, 30, 100) == pytest.approx(float(exact), rel=1e-12)


@pytest.mark.parametrize(("n", "c", "k"), [(5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)])
def test_pass_at_k_rejects_impossible_counts(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_check_completions_keeps_the_shape():
    outcomes = check_completions(
        [[ADD + ADD_TESTS, WRONG_ADD + ADD_TESTS], [], [WRONG_ADD + ADD_TESTS]], workers=3
    )
    assert [[o.passed for o in samples] for samples in outcomes] == [[True, False], [], [False]]


def test_limits_must_be_positive():
    with pytest.raises(ValueError):
        SandboxLimits(cpu_s=0)
    with pytest.raises(ValueError):
        SandboxLimits(timeout_s=0)
