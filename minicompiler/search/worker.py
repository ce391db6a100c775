"""A worker process that is a fresh interpreter, independent of the caller's ``__main__``.

multiprocessing's "spawn" re-imports the parent's ``__main__`` in the child, so a plain
script without an ``if __name__ == "__main__":`` guard would run again inside every worker
(and its tune would recurse); "fork" copies a process that already runs LLVM and OpenMP
threads, which is unsafe. Like TVM's PopenWorker, we start a new interpreter that runs a
fixed function (``BOOTSTRAP``), talking over one socket (a multiprocessing ``Connection``,
so messages are pickles and ``poll`` has a timeout).

The protocol: the parent sends its ``sys.path`` (JSON bytes, so that the same modules import
in the worker — a runner in a test module, a package on a path added at run time), then one
pickle ``(function, args)``; the worker calls ``function(connection, *args)`` and exits when it
returns. Functions travel by reference, so they must live in an importable module — never in
``__main__``, which in the worker is nobody's script.
"""
from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any, Callable

# Not ``-m minicompiler.search.worker``: that would import this module twice (as a package member
# and as __main__).
BOOTSTRAP = "import sys; from minicompiler.search.worker import main; main(sys.argv)"


def importable(function: Callable[..., Any], what: str) -> None:
    """Raise TypeError unless ``function`` can be sent to a worker (by reference, from a module)."""
    module = getattr(function, "__module__", None)
    if module in (None, "__main__", "__mp_main__"):
        raise TypeError(f"{what} must be defined in an importable module (a worker is a fresh interpreter "
                        f"that cannot see {module or 'this'}'s definitions); got {function!r}")
    try:
        pickle.dumps(function)
    except (pickle.PicklingError, AttributeError, TypeError) as error:
        raise TypeError(f"{what} must be a module-level function (it is sent to the worker): {error}") from None


def start(function: Callable[..., Any], args: tuple[Any, ...]) -> tuple[subprocess.Popen, Connection]:
    """Start a fresh interpreter running ``function(connection, *args)``; our end of the socket."""
    ours, theirs = socket.socketpair()
    payload = pickle.dumps((function, args))   # an unpicklable argument fails here, in the caller
    try:
        process = subprocess.Popen([sys.executable, "-c", BOOTSTRAP, str(theirs.fileno())],
                                   pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                                   env=_worker_environment())
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()  # keep only the worker's copy, so its death is EOF here
    connection = Connection(ours.detach())
    try:
        connection.send_bytes(json.dumps([p for p in sys.path if isinstance(p, str)]).encode())
        connection.send_bytes(payload)
    except OSError:
        pass  # the worker died at once: the caller sees EOF on its first poll
    return process, connection


def _worker_environment() -> dict[str, str]:
    """The caller's environment, with this package importable even from an unusual working directory."""
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # holds minicompiler/
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH", "")) if p)
    return env


def _exit_with_parent(parent: int) -> None:
    """A worker stuck in a candidate would outlive a killed parent; leave when the parent is gone."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def main(argv: list[str]) -> None:
    connection = Connection(int(argv[1]))
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    try:
        path = json.loads(connection.recv_bytes())
        sys.path[:] = path + [p for p in sys.path if p not in path]
        function, args = pickle.loads(connection.recv_bytes())
    except EOFError:
        return  # the parent went away before saying anything
    function(connection, *args)
