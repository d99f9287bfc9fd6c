"""Parts of the proxy relay benchmark (bench/proxy_relay.py): a synthetic SSE upstream,
a stand-in node agent that routes the proxy to it, and a load generator."""
