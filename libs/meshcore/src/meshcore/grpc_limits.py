"""Message limits of the node agent's gRPC API (its server and every channel to it).

The status carries the whole mesh: every peer and every route. Its size is bounded by
what the membership table may hold (meshcore.membership: MAX_TABLE_BYTES of records,
MAX_RECORD_BYTES each, MAX_MODELS model ids a list), about 25 MB at the caps, not by
gRPC's default 4 MiB: with that default, eleven large records from one member made the
status too big for the proxy, whose route table then emptied (issue 28). Every channel
and the server take these options."""

MAX_MESSAGE_BYTES = 64 << 20
OPTIONS = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
           ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
