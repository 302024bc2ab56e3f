"""The program a Kubernetes run pod starts first: it runs the pipeline and frames its output.

Kubernetes keeps one log per container with stdout and stderr merged (the API's `stream`
parameter to split them is an alpha feature, off in most clusters), so the executor could not
tell the streams apart by construction. The relay restores that: it starts the run's command
(the same command a Docker run executes: the wrapper, which prints the ready line and starts
`main.py`) as a child with stdout and stderr on two pipes, and writes every chunk to the
container's stdout with a frame byte saying which pipe it came from:

    o <text>    a complete stdout line          e <text>    a complete stderr line
    O <text>    a piece of a stdout line        E <text>    a piece of a stderr line
                (more follows, no newline)                  (more follows, no newline)

Pieces are at most `PIECE_BYTES` long, below the 16 KiB at which container runtimes split a
log line (a split line would carry a second timestamp in the middle of its text).

The pipeline cannot forge a frame: its stdout and stderr are pipes to the relay, and the
container's own stdout belongs to the relay alone. The relay makes itself non-dumpable
(`PR_SET_DUMPABLE 0`) before it starts the pipeline, so `/proc/1/fd/1` and `/proc/1/mem` are
root's and need CAP_SYS_PTRACE, which the run (non-root, all capabilities dropped, no privilege
escalation) does not have. If that call fails the relay refuses to run the pipeline.

The relay is PID 1 of the container, which the kernel sends no signal it has no handler for:
it forwards SIGTERM/SIGINT (cancel, a Job deletion) to the pipeline's process group and exits
with the pipeline's code (128 + signal number when a signal ended it, as a shell does).
"""

from __future__ import annotations

PIECE_BYTES = 8192
RELAY_FAILED_EXIT_CODE = 125  # the relay itself could not start the pipeline

_TEMPLATE = """\
import ctypes, os, signal, subprocess, sys, threading
lock = threading.Lock()
def emit(data):
    with lock:
        view = memoryview(data)
        while view:
            view = view[os.write(1, view):]
try:
    if ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), 'prctl(PR_SET_DUMPABLE, 0) failed')
    child = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, close_fds=True, start_new_session=True)
except Exception as exc:
    emit(b'e fastflow relay: cannot start the pipeline: ' + repr(exc).encode() + b'\\n')
    sys.exit({failed})
def forward(signum, frame):
    try:
        os.killpg(child.pid, signum)
    except OSError:
        pass
signal.signal(signal.SIGTERM, forward)
signal.signal(signal.SIGINT, forward)
def pump(pipe, whole, piece):
    fd = pipe.fileno()
    while True:
        data = os.read(fd, 65536)
        if not data:
            return
        *lines, rest = data.split(b'\\n')
        frames = []
        for line in lines:
            while len(line) > {piece_bytes}:
                frames.append(piece + line[:{piece_bytes}] + b'\\n')
                line = line[{piece_bytes}:]
            frames.append(whole + line + b'\\n')
        while rest:
            frames.append(piece + rest[:{piece_bytes}] + b'\\n')
            rest = rest[{piece_bytes}:]
        emit(b''.join(frames))
pumps = [threading.Thread(target=pump, args=(child.stdout, b'o ', b'O '), daemon=True),
         threading.Thread(target=pump, args=(child.stderr, b'e ', b'E '), daemon=True)]
for thread in pumps:
    thread.start()
code = child.wait()
try:
    os.killpg(child.pid, signal.SIGKILL)
except OSError:
    pass
for thread in pumps:
    thread.join(5)
sys.exit(code if code >= 0 else 128 - code)
"""


def relay_code() -> str:
    """The `python -c` program; the run's command follows as its arguments."""
    return _TEMPLATE.format(failed=RELAY_FAILED_EXIT_CODE, piece_bytes=PIECE_BYTES)
