"""Run an exercise's checks on the learner's module; every failure becomes one short message.

The generated test_NAME.py and `mlgrind exercise check NAME` both grade here, so pytest and
the CLI grade with the same checks in the same protected way. The learner's file is compiled
from its source on every check (no import cache, no .pyc), so an edit is always what gets graded.

The learner's code never runs in the grading process. A forked child (cheap: NumPy and the
checks are already loaded) runs the checks one by one and sends each result back; the parent
gives every check a deadline. Whatever the code does (loop forever, exit, crash, allocate or
print without end) becomes a failure of the check it happened in, and a fresh child goes on
with the next check. Inside the child: a memory limit (Linux), a cap on what it may print,
and no access to `mlgrind.ref`, the answer key.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import os
import signal
import sys
import tempfile
import traceback
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .catalog import Check, get

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

# NumPy (through compare) and multiprocessing load when grading starts, not with the CLI: the
# CLI reads this module's limits for its --help.

TIMEOUT = 5.0  # seconds per check; a correct solution needs milliseconds
MEMORY_LIMIT = 4 * 2**30  # bytes of address space the learner's code may add (Linux only)
OUTPUT_LIMIT = 2**20  # bytes a check may print; more ends it
SHOWN = 2000  # characters of a check's printed output that come back with its result

ANSWER_KEY = "mlgrind.ref"
REFUSED = (
    "{file} imports {module}: that is mlgrind's reference implementation, the answer key these "
    "checks compare with, so a solution may not use it. Write it with NumPy and the standard "
    "library."
)


@dataclass(frozen=True)
class Result:
    check: str
    passed: bool
    message: str = ""
    output: str = ""  # what the learner's code printed during the check (its first SHOWN chars)


def checks(name: str) -> tuple[Check, ...]:
    return get(name).checks


class LoadError(Exception):
    """The learner's file does not run as a module (syntax error, failing import…)."""


class AnswerKey(ImportError):
    """The learner's code reached for mlgrind.ref."""


class TimedOut(BaseException):
    """Raised inside the child when a check's time is up; a BaseException so that the learner's
    `except Exception` cannot swallow it."""


def _answer_key(module: str) -> bool:
    """Whether importing `module` reaches the answer key (`from mlgrind import *` would too)."""
    return module in (ANSWER_KEY, "mlgrind.*") or module.startswith(ANSWER_KEY + ".")


def _refuse_answer_key(tree: ast.AST, path: Path) -> None:
    """Refuse source that names the answer key: `import mlgrind.ref`, `from mlgrind import
    ref`, or the module's name as a string (importlib.import_module, __import__)."""
    for node in ast.walk(tree):
        named: list[str] = []
        if isinstance(node, ast.Import):
            named = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            named = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            named = [node.value]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            named = [f"{node.value.id}.{node.attr}"]  # `import mlgrind` then `mlgrind.ref`
        for module in named:
            if _answer_key(module):
                where = f"{path.name} line {node.lineno}"
                raise LoadError(REFUSED.format(file=where, module=module))


def load(path: Path, refuse_answer_key: bool = False) -> types.ModuleType:
    """Execute the learner's file as a fresh module. Its folder goes on sys.path while it
    loads, so it may import the learner's own earlier exercises (`from rope import rope`)."""
    path = Path(path).resolve()
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise LoadError(f"cannot read {path.name}: {getattr(error, 'strerror', error)}") from None
    try:
        code = compile(source, str(path), "exec", flags=ast.PyCF_ONLY_AST)
    except SyntaxError as error:
        raise LoadError(f"{path.name} line {error.lineno}: SyntaxError: {error.msg}") from None
    if refuse_answer_key:
        _refuse_answer_key(code, path)
    module = types.ModuleType(f"mlgrind_exercise.{path.stem}")
    module.__file__ = str(path)
    # dataclasses and pickling look a class's module up in sys.modules.
    sys.modules[module.__name__] = module
    sys.path.insert(0, str(path.parent))
    try:
        exec(compile(code, str(path), "exec"), module.__dict__)  # noqa: S102 - it is their code
    except AnswerKey as error:
        raise LoadError(str(error)) from None
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # noqa: BLE001 - whatever their module does is reported
        raise LoadError(f"{path.name} fails while loading: {_explain(error, path)}") from None
    finally:
        sys.path.remove(str(path.parent))
    return module


def _explain(error: BaseException, path: Path) -> str:
    """The exception, located at the innermost line of the learner's file that led to it."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if Path(f.filename) == path]
    f = frames[-1] if frames else None
    where = ""
    if f:
        what = "the module's body" if f.name == "<module>" else f"{f.name}()"
        where = f" in {what} ({path.name} line {f.lineno}: {(f.line or '').strip()})"
    if isinstance(error, AnswerKey):
        return str(error)
    if isinstance(error, NotImplementedError) and f:
        return (
            f"{f.name}() is not implemented yet ({path.name} line {f.lineno}):"
            f" replace its `raise NotImplementedError` with your code"
        )
    if isinstance(error, SystemExit):
        return (
            f"exited with sys.exit({error.code!r}){where}: a solution returns its results, it "
            f"never ends the process"
        )
    if isinstance(error, MemoryError):
        limit = f" (the limit is {MEMORY_LIMIT // 2**30} GB)" if _limits_memory() else ""
        return f"ran out of memory{limit}{where}: look for an array far larger than the inputs"
    if isinstance(error, TimedOut):
        return f"timed out after {error.args[0]:g} s{where}: {_SLOW}"
    what = f"{type(error).__name__}: {error}"
    if not f:
        return what
    return f"{f.name}() raised {what}\n  {path.name} line {f.lineno}: {(f.line or '').strip()}"


_SLOW = "a check needs milliseconds, so look for a loop that never ends"


def _grade(check: Check, path: Path, refuse_answer_key: bool) -> str | None:
    """None if the check passes, else the message for the learner; LoadError when the file
    does not load."""
    from .compare import Mismatch

    module = load(path, refuse_answer_key)
    try:
        check.run(module)
    except Mismatch as error:
        return str(error)
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # noqa: BLE001 - their code failed: say where, not how
        return _explain(error, path)
    return None


# --- the child -------------------------------------------------------------------------------


def _limits_memory() -> bool:
    return sys.platform.startswith("linux")


def _guard_imports(folder: Path) -> None:
    """Refuse the answer key to code from the learner's folder, however it imports: the
    source check in `load` sees what is spelled out, this sees what is computed at runtime."""

    def learners(depth: int) -> bool:
        frame = sys._getframe(depth)
        return Path(frame.f_code.co_filename).parent == folder

    original_import, original_import_module = builtins.__import__, importlib.import_module

    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        wanted = [name, *(f"{name}.{f}" for f in fromlist or ())] if not level else []
        if any(_answer_key(m) for m in wanted) and learners(2):
            raise AnswerKey(REFUSED.format(file=Path(sys._getframe(1).f_code.co_filename).name,
                                           module=name))
        return original_import(name, globals, locals, fromlist, level)

    def guarded_import_module(name, package=None):
        if _answer_key(name) and learners(2):
            raise AnswerKey(REFUSED.format(file=Path(sys._getframe(1).f_code.co_filename).name,
                                           module=name))
        return original_import_module(name, package)

    builtins.__import__ = guarded_import
    importlib.import_module = guarded_import_module


def _child(
    checks: Sequence[Check], path: Path, timeout: float, refuse: bool, out: Connection, fd: int
) -> None:
    """Grade checks in order, sending (message, printed) for each; never returns."""
    try:
        os.setpgid(0, 0)  # its own process group: the parent can end it with any children
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)  # input() gets EOF rather than waiting for a keyboard
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - fd 0 belongs to the process
        # line-buffered: what was printed before a crash or os._exit still shows
        sys.stdout = sys.stderr = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        import faulthandler
        import resource

        faulthandler.disable()  # pytest's would print a crash's stack to the terminal, not to us

        # Past the cap a write raises SIGXFSZ, which ends the child: the parent says so.
        resource.setrlimit(resource.RLIMIT_FSIZE, (OUTPUT_LIMIT, OUTPUT_LIMIT))
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it; write would fail
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash leaves no core file behind
        if _limits_memory():
            # on top of what the grader has mapped already (NumPy, its BLAS threads' buffers)
            with open("/proc/self/statm") as statm:
                mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            limit = mapped + MEMORY_LIMIT
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        if refuse:
            _guard_imports(path.parent)

        def time_up(signum, frame):
            raise TimedOut(timeout)

        signal.signal(signal.SIGALRM, time_up)
        unloadable = None  # a file that does not load fails every check alike: load it once
        for check in checks:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            signal.setitimer(signal.ITIMER_REAL, timeout)
            try:
                message = unloadable or _grade(check, path, refuse)
            except LoadError as error:
                message = unloadable = str(error)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            sys.stdout.flush()
            out.send((message, _printed(fd)))
        code = 0
    except BaseException:  # noqa: BLE001 - the parent reports a child that ends without a result
        code = 70
    os._exit(code)  # no atexit handlers, no pytest teardown: this is a copy of the parent


def _printed(fd: int) -> str:
    text = os.pread(fd, SHOWN * 4, 0).decode("utf-8", errors="replace")
    return text[:SHOWN] + (" …" if len(text) > SHOWN else "")


def _ended(status: int) -> str:
    """What a child's wait status says about how the check ended, for the learner."""
    if os.WIFEXITED(status):
        code = os.WEXITSTATUS(status)
        return (
            f"ended the process with exit status {code} (as os._exit({code}) does) before the "
            f"check finished: a solution returns its results, it never ends the process"
        )
    signum = os.WTERMSIG(status)
    if signum == signal.SIGXFSZ:
        return (
            f"printed more than {OUTPUT_LIMIT // 2**20} MB: a check's output is capped; "
            f"print shapes, not whole arrays in a loop"
        )
    name = signal.Signals(signum).name
    if signum == signal.SIGKILL:
        return f"killed by signal {signum} ({name}): os.kill, or the system ran out of memory"
    return f"crashed: killed by signal {signum} ({name})"


@dataclass
class _Child:
    pid: int
    results: Connection
    status: int | None = None  # its wait status, once it has ended


def _start(checks: Sequence[Check], path: Path, timeout: float, refuse: bool, fd: int) -> _Child:
    from multiprocessing.connection import Pipe

    receive, send = Pipe(duplex=False)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        receive.close()
        _child(checks, path, timeout, refuse, send, fd)
    send.close()
    try:
        os.setpgid(pid, pid)  # as the child does: whichever runs first, _stop finds the group
    except OSError:
        pass
    return _Child(pid, receive)


def _stop(child: _Child) -> int:
    """End the child and its process group if still running; its wait status."""
    if child.status is None:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except OSError:
            os.kill(child.pid, signal.SIGKILL)  # not yet a group leader, or already ended
        child.results.close()
        child.status = os.waitpid(child.pid, 0)[1]
    return child.status


def _collect(child: _Child, checks: Sequence[Check], timeout: float, fd: int) -> list[Result]:
    """The child's results in order, up to and including a check it did not finish."""
    # A grace beyond the child's own alarm, for code the alarm cannot interrupt (a long call
    # into C) or that catches it.
    deadline = timeout + min(1.0, timeout / 2)
    found: list[Result] = []
    for check in checks:
        if not child.results.poll(deadline):
            _stop(child)
            message = f"timed out after {timeout:g} s: {_SLOW}"
            return [*found, Result(check.name, False, message, _printed(fd))]
        try:
            message, output = child.results.recv()
        except EOFError:  # it ended without a result: how it ended is the message
            return [*found, Result(check.name, False, _ended(_stop(child)), _printed(fd))]
        found.append(Result(check.name, message is None, message or "", output))
    return found


def _protected(
    checks: Sequence[Check], path: Path, timeout: float, refuse: bool
) -> list[Result]:
    results: list[Result] = []
    with tempfile.TemporaryFile() as printed:
        fd = printed.fileno()
        while len(results) < len(checks):
            # A child grades the remaining checks, until they are done or one ends it.
            remaining = checks[len(results) :]
            child = _start(remaining, path, timeout, refuse, fd)
            try:
                results += _collect(child, remaining, timeout, fd)
            finally:
                _stop(child)
    return results


def _unprotected(checks: Sequence[Check], path: Path, refuse: bool) -> list[Result]:
    """Where there is no fork (Windows), the checks run in this process, without limits."""
    found = []
    for check in checks:
        try:
            message = _grade(check, path, refuse)
        except LoadError as error:
            message = str(error)
        found.append(Result(check.name, message is None, message or ""))
    return found


def run_checks(
    checks: Sequence[Check],
    path: Path,
    timeout: float = TIMEOUT,
    refuse_answer_key: bool = False,
) -> list[Result]:
    """Each check's result, in order. refuse_answer_key: grade the file as the learner's own
    work (the CLI and test_NAME.py do); mlgrind's tests drop the reference in as a solution."""
    path = Path(path).resolve()
    if hasattr(os, "fork"):
        return _protected(tuple(checks), path, timeout, refuse_answer_key)
    return _unprotected(checks, path, refuse_answer_key)


def with_output(result: Result) -> str | None:
    """A failure's message followed by what the code printed, as pytest shows it."""
    if result.passed:
        return None
    if not result.output:
        return result.message
    return f"{result.message}\n--- printed during the check ---\n{result.output}"


def run_check(
    check: Check, path: Path, timeout: float = TIMEOUT, refuse_answer_key: bool = False
) -> str | None:
    """None if the check passes, else the message for the learner."""
    return with_output(run_checks((check,), path, timeout, refuse_answer_key)[0])


def run(
    name: str, path: Path, timeout: float = TIMEOUT, refuse_answer_key: bool = False
) -> list[Result]:
    return run_checks(checks(name), path, timeout, refuse_answer_key)
