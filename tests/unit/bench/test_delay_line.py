"""The WAN emulation link's pure part (bench/relay/delay_link.DelayLine): every packet is
held for the delay, packets leave in the order they came, each whole."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
from relay.delay_link import DelayLine  # noqa: E402


def test_packets_leave_in_order_whole_and_only_once_due() -> None:
    line = DelayLine(delay=0.010)
    packets = [bytes([i]) * (i * 100 + 1) for i in range(5)]
    for i, p in enumerate(packets):
        line.push(p, now=1.000 + i * 0.001)
    assert line.due(1.0095) == []                 # the first is due at 1.010
    assert line.due(1.0115) == packets[:2]        # 1.010 and 1.011
    assert line.next_due() == 1.012
    assert line.due(5.0) == packets[2:]           # late readers still get them in order
    assert line.due(6.0) == [] and line.next_due() is None


def test_zero_delay_passes_at_once() -> None:
    line = DelayLine(delay=0.0)
    line.push(b"x", now=2.0)
    assert line.due(2.0) == [b"x"]


def tcp_packet(data: bytes) -> bytes:
    """A minimal IPv4/TCP packet (20-byte headers) carrying `data`."""
    ip = bytes([0x45, 0]) + (40 + len(data)).to_bytes(2, "big") + bytes(5) + bytes([6]) + bytes(10)
    tcp = bytes(12) + bytes([5 << 4]) + bytes(7)
    return ip + tcp + data


def test_turns_count_direction_changes_of_packets_with_data_only() -> None:
    from relay.delay_link import Turns
    turns = Turns()
    for direction, data in [(0, b"req"), (0, b"more"), (1, b""), (1, b"resp"), (0, b""), (0, b"req2"), (1, b"r")]:
        turns.see(direction, tcp_packet(data))
    assert turns.flips == 4  # request, response, request, response (ACK-only packets ignored)
    turns.see(0, b"\x60" + bytes(50))  # IPv6 and other protocols are not counted
    assert turns.flips == 4
