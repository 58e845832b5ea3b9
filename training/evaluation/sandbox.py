"""Runs model-generated code against a benchmark's tests, for HumanEval and MBPP pass@k (the
LLaMA paper's Table 8), without letting that code touch the evaluating process or the machine.

Generated code is untrusted: a sample may loop forever, allocate without bound, print forever,
delete files, open sockets or start programs, by accident far more often than by design. Each
program runs in its own `python -I -S -B` subprocess, never in the evaluating process, with:

- limits the kernel enforces: RLIMIT_CPU (SIGXCPU at `cpu_s`), RLIMIT_AS (allocations fail
  with MemoryError past `memory_mb`), RLIMIT_FSIZE (a write past `file_size_mb` fails with
  EFBIG), RLIMIT_CORE 0 (a crash leaves no core file), RLIMIT_NPROC 1 (no new process or thread
  for an unprivileged user; the kernel ignores it for root, see below);
- a wall-clock timeout: the child leads its own session (`start_new_session=True`) and the whole
  process group is SIGKILLed on expiry, and once more after every run so nothing outlives it;
- an empty temporary directory as its working directory, deleted afterwards; an environment of
  PATH, HOME and TMPDIR (the directory) and single-threaded math libraries, nothing inherited;
  stdin from /dev/null; output captured up to OUTPUT_CAP_BYTES (the rest is read and dropped);
- a bootstrap that sets those limits, installs an audit hook (`sys.addaudithook`: hooks cannot
  be removed) and only then runs the program. The hook refuses, by ending the process with a
  "refused: ..." verdict the program cannot catch: writes, creations, removals, renames, links
  and metadata changes outside the directory (`open` in a write mode, `os.remove`, `os.rename`,
  `os.mkdir`, `os.symlink`, `os.chmod`, ...), every `socket.*` event, starting programs
  (`os.system`, `os.exec`, `os.fork`, `os.forkpty`, `os.posix_spawn`), signalling processes
  (`os.kill`, `os.killpg`), `os.chdir`, raising limits (`resource.setrlimit`/`prlimit`),
  sub-interpreters (they do not run the hook) and the gc introspection that could reach the
  hook's closure. Modules whose C code acts without raising any audit event cannot be imported
  (they raise ModuleNotFoundError, so libraries that treat them as optional, as numpy does
  ctypes, still import): `_ctypes` (foreign calls and raw memory writes), `_posixsubprocess`
  (its fork_exec, under `subprocess`, starts programs silently), `_sqlite3` (ATTACH creates
  files), `readline` (writes history files) and `_posixshmem` (creates /dev/shm files). Nor can
  a program load native code it wrote into its directory.

`-S` keeps site-packages' .pth files from running before the hook is in place (site-packages is
appended to sys.path afterwards, so numpy and the like still import); `-B` keeps the import
system from writing bytecode outside the directory (PYTHONDONTWRITEBYTECODE would do the same,
but `-I` ignores every PYTHON* variable).

Path rule: a path may be written when it is a str or bytes with no ".." component, and relative
or under the directory. Relative paths are safe because the working directory never
changes and a directory fd can only be opened inside the directory (a read-only `os.open` of a
directory outside, or of a relative path with "..", is refused); symlinks can only be created
pointing inside. ".." is refused rather than resolved: after a symlink it does not mean what
the text says. `/dev/null` may be opened for writing.

What this is not: a boundary against code written to escape it. An audit hook runs in the same
interpreter as the program; PEP 578 says as much. Known gaps, all raising no audit event:
`os.mknod` and `os.mkfifo` (empty entries outside the directory; as root, a device node inside
it), `signal.pidfd_send_signal` on an `os.pidfd_open` fd (a signal to the evaluator, or to
anything else this user may signal), and deliberate exploits of interpreter or numpy memory
bugs. The layers that hold regardless are the kernel's (separate process, rlimits,
process-group kill, scrubbed environment). Run the evaluator as an unprivileged user: the
kernel does not apply RLIMIT_NPROC to root (with it at 1, root still forks and starts threads;
any other user can do neither), and root may create device nodes. For hostile code, add a
container or VM.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

OUTPUT_CAP_BYTES = 64 * 1024  # what a run keeps of its stdout and stderr
VERDICT_CAP_BYTES = 4096  # what the parent reads of the child's verdict

# Runs in the child, never in this process: `python -I -S -B -c _BOOTSTRAP verdict_fd cpu_s
# memory_bytes file_size_bytes site_packages`. It writes exactly one verdict to verdict_fd:
# "passed", "memory", "failed: ..." or (from the hook) "refused: ...".
_BOOTSTRAP = r'''
import os, resource, stat, sys


def guard(root, verdict_fd):
    """Installs the audit hook. Everything the hook uses is bound here, in its closure, so the
    program cannot monkeypatch it afterwards (builtins and module attributes it could)."""
    prefix = root + "/"
    str_, bytes_, int_, tuple_, type_, repr_ = str, bytes, int, tuple, type, repr
    split, startswith, rpartition, join = str.split, str.startswith, str.rpartition, str.join
    encode, decode = str.encode, bytes.decode
    write, exit_, stat_, is_dir = os.write, os._exit, os.stat, stat.S_ISDIR
    not_found = ModuleNotFoundError
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    path_args = {  # event: the positions of its path arguments
        "os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.truncate": (0,),
        "os.rename": (0, 1), "os.link": (0, 1), "os.symlink": (0, 1),
        "os.chmod": (0,), "os.chown": (0,), "os.utime": (0,),
        "os.setxattr": (0,), "os.removexattr": (0,),
    }
    refused_events = frozenset({
        "os.system", "os.exec", "os.fork", "os.forkpty", "os.posix_spawn",
        "os.kill", "os.killpg", "os.chdir", "resource.setrlimit", "resource.prlimit",
        "cpython.PyInterpreterState_New", "gc.get_objects", "gc.get_referrers",
        "gc.get_referents",
    })
    denied_modules = frozenset({"_ctypes", "_posixsubprocess", "_sqlite3", "readline",
                                "_posixshmem"})

    def text(path):
        if type_(path) is str_:
            return path
        if type_(path) is bytes_:
            return decode(path, "utf-8", "surrogateescape")
        return None  # an fd, or a subclass whose methods are the program's code

    def outside(path):
        path = text(path)
        return (path is None or ".." in split(path, "/")
                or (startswith(path, "/") and not startswith(path, prefix)))

    def may_be_directory(path):
        path = text(path)
        if path is None or not startswith(path, "/"):
            return True  # relative to a dir_fd the event does not carry
        try:
            return is_dir(stat_(path).st_mode)
        except OSError:
            return False

    def show(value):
        kind = type_(value)
        if kind is str_ or kind is bytes_ or kind is int_:
            return repr_(value)
        if kind is tuple_:
            return "(" + join(", ", [show(item) for item in value]) + ")"
        return "<object>"

    def refuse(event, detail):
        message = "refused: " + event + ("" if detail is None else " " + show(detail))
        write(verdict_fd, encode(message, "utf-8", "backslashreplace")[:4000])
        exit_(3)

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            if type_(path) is int_:
                return
            if flags & write_flags:
                if text(path) != "/dev/null" and outside(path):
                    refuse(event, path)
            elif mode is None and outside(path) and may_be_directory(path):
                refuse(event, path)  # os.open of a directory outside: a dir_fd to write under
        elif event in path_args:
            for position in path_args[event]:
                if outside(args[position]):
                    refuse(event, args[position])
        elif event == "import":
            name, filename = args[0], args[1]
            if type_(name) is not str_ or rpartition(name, ".")[2] in denied_modules:
                raise not_found("No module named " + show(name) + " (refused by the sandbox)")
            if filename is not None and not outside(filename):
                refuse(event, filename)  # native code the program wrote
        elif startswith(event, "socket."):
            refuse(event, args[1] if event in ("socket.connect", "socket.bind") else None)
        elif event in refused_events:
            refuse(event, args[0] if args else None)

    sys.addaudithook(hook)


def describe(error, source):
    """The verdict for an exception: failed, its type and message, and the program's line it
    last passed through (line N: code)."""
    try:
        message = str(error)[:500]
        line = None
        trace = error.__traceback__
        while trace is not None:
            if trace.tb_frame.f_code.co_filename == "program.py":
                line = trace.tb_lineno
            trace = trace.tb_next
        reason = "failed: " + type(error).__name__ + (": " + message if message else "")
        if line is not None:
            reason += " (line %d: %s)" % (line, source.splitlines()[line - 1].strip()[:200])
        return reason
    except BaseException:
        return "failed: " + type(error).__name__


def main():
    verdict_fd, cpu_s, memory, file_size = map(int, sys.argv[1:5])
    for limit, value in ((resource.RLIMIT_CPU, (cpu_s, cpu_s + 1)),
                         (resource.RLIMIT_AS, (memory, memory)),
                         (resource.RLIMIT_FSIZE, (file_size, file_size)),
                         (resource.RLIMIT_CORE, (0, 0)),
                         (resource.RLIMIT_NPROC, (1, 1))):
        resource.setrlimit(limit, value)
    with open("program.py", encoding="utf-8") as file:
        source = file.read()
    guard(os.getcwd(), verdict_fd)
    sys.path.extend(path for path in sys.argv[5].split(os.pathsep) if path)
    try:
        exec(compile(source, "program.py", "exec"), {})
        verdict = "passed"
    except MemoryError:
        verdict = "memory"
    except BaseException as error:
        verdict = describe(error, source)
    os.write(verdict_fd, verdict.encode("utf-8", "backslashreplace")[:4000])
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    os._exit(0)


main()
'''


@dataclass(frozen=True)
class SandboxLimits:
    """What one program may use. The defaults are generous for HumanEval/MBPP tests, which run
    in milliseconds: a limit only decides the fate of a sample that is broken anyway."""

    timeout_s: float = 10.0  # wall clock, interpreter start included
    cpu_s: int = 10
    memory_mb: int = 1024  # address space, so it counts what is mapped, not only what is used
    file_size_mb: int = 16  # per file

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or min(self.cpu_s, self.memory_mb, self.file_size_mb) < 1:
            raise ValueError(f"every limit must be positive: {self}")


DEFAULT_LIMITS = SandboxLimits()


@dataclass(frozen=True)
class Outcome:
    """How one program ended. `reason` is "passed", "failed: <exception> (line N: code)",
    "memory", "timeout" (wall clock), "timeout: cpu", "refused: <audit event> <argument>",
    or "failed: killed by SIGNAL" / "failed: exit status N ..." when it died without a verdict.
    `output` is its stdout and stderr, cut at OUTPUT_CAP_BYTES."""

    passed: bool
    reason: str
    output: str = ""


def run_program(program: str, limits: SandboxLimits = DEFAULT_LIMITS) -> Outcome:
    """Runs `program` (a solution followed by its tests) in a fresh sandbox; it passes when it
    runs to its end without raising."""
    workdir = os.path.realpath(tempfile.mkdtemp(prefix="sandbox-"))
    try:
        # the name the bootstrap reads, and the one its verdicts' line numbers refer to
        with open(os.path.join(workdir, "program.py"), "w", encoding="utf-8") as file:
            file.write(program)
        return _run_in(workdir, limits)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run_in(workdir: str, limits: SandboxLimits) -> Outcome:
    verdict_read, verdict_write = os.pipe()
    try:
        try:
            child = subprocess.Popen(
                [
                    sys.executable,
                    *("-I", "-S", "-B", "-c", _BOOTSTRAP),
                    str(verdict_write),
                    str(limits.cpu_s),
                    str(limits.memory_mb << 20),
                    str(limits.file_size_mb << 20),
                    os.pathsep.join(site.getsitepackages()),
                ],
                cwd=workdir,
                env=_child_env(workdir),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(verdict_write,),
                start_new_session=True,
            )
        finally:
            os.close(verdict_write)
        with child:
            output = bytearray()
            drain = threading.Thread(target=_drain, args=(child.stdout.fileno(), output))
            drain.start()
            try:
                timed_out = not _wait_unreaped(child.pid, limits.timeout_s)
            finally:
                _kill_group(child.pid)
                returncode = child.wait()
                drain.join()
        verdict = _read_all(verdict_read, VERDICT_CAP_BYTES).decode("utf-8", "replace")
    finally:
        os.close(verdict_read)
    reason = verdict or _reason_without_verdict(returncode, timed_out)
    text = output[:OUTPUT_CAP_BYTES].decode("utf-8", "replace")
    if len(output) > OUTPUT_CAP_BYTES:
        text += "\n[output truncated]"
    return Outcome(passed=reason == "passed", reason=reason, output=text)


def _child_env(workdir: str) -> dict[str, str]:
    """Nothing from this process's environment (tokens, credentials, proxies) reaches the
    program. Math libraries stay single-threaded: the memory limit counts their thread stacks
    and RLIMIT_NPROC forbids threads."""
    single = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    return {"PATH": os.defpath, "HOME": workdir, "TMPDIR": workdir, **single}


def _drain(fd: int, output: bytearray) -> None:
    """Reads the child's output to its end and keeps the first OUTPUT_CAP_BYTES + 1 bytes (the
    one more says it was cut): the rest is read and dropped, so a program that prints forever
    neither blocks on a full pipe nor fills this process's memory."""
    while chunk := os.read(fd, 1 << 16):
        if len(output) <= OUTPUT_CAP_BYTES:
            output += chunk[: OUTPUT_CAP_BYTES + 1 - len(output)]


def _wait_unreaped(pid: int, timeout_s: float) -> bool:
    """Waits up to `timeout_s` for the child to exit, without reaping it: until it is reaped its
    pid, which is also its process group's id, cannot be reused, so killing the group afterwards
    can only reach what it left behind. Returns whether it exited in time."""
    deadline = time.monotonic() + timeout_s
    pause = 0.001
    while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(2 * pause, 0.02)
    return True


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # nothing left alive in the group
        os.killpg(pgid, signal.SIGKILL)


def _read_all(fd: int, cap: int) -> bytes:
    """The first `cap` bytes from a pipe whose writers have all exited."""
    data = b""
    while chunk := os.read(fd, 1 << 16):
        data += chunk[: cap - len(data)]
    return data


def _reason_without_verdict(returncode: int, timed_out: bool) -> str:
    """Why a child that left no verdict ended: our timeout, its CPU limit (SIGXCPU), another
    signal (a crash; SIGKILL is also the CPU hard limit, one second later), or an exit."""
    if timed_out:
        return "timeout"
    if returncode == -signal.SIGXCPU:
        return "timeout: cpu"
    if returncode < 0:
        try:
            return f"failed: killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"failed: killed by signal {-returncode}"
    return f"failed: exit status {returncode} before the tests finished"


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimator of Chen et al. 2021 ("Evaluating Large Language Models
    Trained on Code"): the chance that k of the n samples, c of them correct, drawn without
    replacement include a correct one, 1 - C(n-c, k) / C(n, k). Computed as their numerically
    stable product, 1 - prod_{i=n-c+1}^{n} (1 - k/i): no binomial is formed (C(2000, 1000) is
    past any float), and every factor lies in [0, 1]."""
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0  # every draw of k samples holds a correct one
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def check_completions(
    programs: list[list[str]], limits: SandboxLimits = DEFAULT_LIMITS, workers: int = 1
) -> list[list[Outcome]]:
    """Runs every sample of every problem (`programs[problem][sample]`, each a whole program)
    and returns their outcomes in the same shape. `workers` sandboxes run at once, each its own
    subprocess: the threads here only wait."""
    flat = [program for samples in programs for program in samples]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = iter(list(pool.map(lambda program: run_program(program, limits), flat)))
    return [[next(outcomes) for _ in samples] for samples in programs]
