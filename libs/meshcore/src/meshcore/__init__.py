"""meshcore: the one library shared by every Mesh LLM role.

It holds what more than one process must agree on: ids, the node's home and
identity, invite tokens, configuration records, the gRPC contracts (api/),
model naming and small process helpers. It imports no service.
"""

__version__ = "0.1.0"
