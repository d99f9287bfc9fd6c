"""Parts of the proxy relay benchmark (bench/proxy_relay.py): a synthetic SSE upstream,
a stand-in node agent that routes the proxy to it, and a load generator."""


def use_uvloop() -> None:
    """The bench's own processes run on uvloop when it is installed (cheaper per chunk)."""
    try:
        import uvloop
    except ImportError:
        return
    uvloop.install()
