"""Process and port helpers shared by the launcher and the node agent."""

from __future__ import annotations

import ctypes
import logging
import signal
import socket
import sys

from meshcore.errors import PortInUse

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn for children: on Linux, SIGTERM the child when its parent dies,
    so a hard-killed launcher or node agent leaves no orphans."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_tcp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def setup_logging(role: str, level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, stream=sys.stderr,
                        format=f"%(asctime)s {role:<7} %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("quic").setLevel(logging.WARNING)  # aioquic's per-connection chatter


def unix_socket_alive(path: str) -> bool:
    """True if something accepts connections on this unix socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
            return True
        except OSError:
            return False


def bind_tcp(host: str, port: int, what: str) -> socket.socket:
    """A listening-ready TCP socket, or PortInUse with a sentence a user can act on.
    Servers bind this way (then hand the socket to uvicorn) so a taken port is a
    one-line error, not a traceback."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortInUse(f"port {port} ({what}) is already in use on {host}; "
                        f"stop whatever uses it or pick another port") from exc
    sock.set_inheritable(True)
    return sock
