"""A packet capture on one interface for tests (root only): AF_PACKET and a BPF filter, no tcpdump.

The kernel keeps only IPv4 TCP segments to or from the given ports (the processes under test
listen there; every connection they make ends at one of them), so other programs' traffic on
a busy loopback never reaches, slows or overflows the capture. A loopback segment is seen
leaving and arriving; ``streams`` rebuilds each TCP direction in sequence order, each segment
once, so a secret split over two segments is still found.
"""

from __future__ import annotations

import ctypes
import socket
import struct
import threading
from collections.abc import Iterator

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
Flow = tuple[bytes, int, bytes, int]  # source address, port, destination address, port


def port_filter(ports: list[int]) -> list[tuple[int, int, int, int]]:
    """Classic BPF: accept IPv4 TCP whose source or destination port is one of ``ports``."""
    n = len(ports)
    drop, accept = 9 + 2 * n, 10 + 2 * n

    def to(pc: int, target: int) -> int:  # jumps count from the next instruction
        return target - pc - 1

    prog = [
        (0x28, 0, 0, 12),  # 0: ldh [12]  (ethertype)
        (0x15, 0, to(1, drop), 0x0800),  # 1: IPv4?
        (0x30, 0, 0, 23),  # 2: ldb [23]  (protocol)
        (0x15, 0, to(3, drop), 6),  # 3: TCP?
        (0x28, 0, 0, 20),  # 4: ldh [20]  (fragment offset)
        (0x45, to(5, drop), 0, 0x1FFF),  # 5: a later fragment carries no ports
        (0xB1, 0, 0, 14),  # 6: x = IP header length
        (0x48, 0, 0, 14),  # 7: ldh [x+14] (source port)
    ]
    prog += [(0x15, to(8 + i, accept), 0, p) for i, p in enumerate(ports)]
    prog.append((0x48, 0, 0, 16))  # ldh [x+16] (destination port)
    prog += [
        (0x15, to(9 + n + i, accept), to(9 + n + i, drop) if i == n - 1 else 0, p)
        for i, p in enumerate(ports)
    ]
    prog += [(0x06, 0, 0, 0), (0x06, 0, 0, 0x40000)]  # drop, accept (whole frame)
    assert len(prog) == accept + 1
    return prog


class Capture(threading.Thread):
    def __init__(self, interface: str, ports: list[int]) -> None:
        super().__init__(name="capture", daemon=True)
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # no frames until bound
        prog = port_filter(ports)
        self._code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in prog))
        fprog = struct.pack("HL", len(prog), ctypes.addressof(self._code))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
        self.sock.bind((interface, ETH_P_ALL))  # filtered from the first frame on
        self.sock.settimeout(0.05)
        self.packets: list[bytes] = []
        self.dropped = 0
        self.gaps: dict[Flow, int] = {}  # holes found in each rebuilt stream
        self._done = threading.Event()

    def __enter__(self) -> Capture:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self.join(10)
        assert not self.is_alive(), "the capture thread did not stop"
        _packets, dropped = struct.unpack("II", self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        self.dropped = dropped
        self.sock.close()

    def run(self) -> None:
        while not self._done.is_set():
            try:
                self.packets.append(self.sock.recv(1 << 18))
            except TimeoutError:
                continue
        self.sock.setblocking(False)
        try:
            while True:  # what arrived before the stop
                self.packets.append(self.sock.recv(1 << 18))
        except BlockingIOError:
            pass

    def all_bytes(self) -> bytes:
        return b"\n".join(self.packets)

    def streams(self) -> dict[Flow, bytes]:
        """Each TCP direction captured, its payload in sequence order."""
        segments: dict[Flow, dict[int, bytes]] = {}
        for flow, seq, payload in _tcp(self.packets):
            seen = segments.setdefault(flow, {})
            if len(payload) > len(seen.get(seq, b"")):
                seen[seq] = payload
        return {flow: self._join(flow, by_seq) for flow, by_seq in segments.items()}

    def _join(self, flow: Flow, by_seq: dict[int, bytes]) -> bytes:
        base = next(iter(by_seq))
        rel = {((seq - base + (1 << 31)) % (1 << 32)) - (1 << 31): p for seq, p in by_seq.items()}
        start = min(rel)
        out = bytearray()
        for offset, payload in sorted((r - start, p) for r, p in rel.items()):
            if offset > len(out):
                self.gaps[flow] = self.gaps.get(flow, 0) + 1
                out += b"\0" * (offset - len(out))
            out[offset : offset + len(payload)] = payload
        return bytes(out)

    def check_complete(self, streams: dict[Flow, bytes]) -> None:
        """The capture missed nothing: no frame dropped, no hole in any stream."""
        assert streams, "no TCP stream captured"
        assert self.dropped == 0, f"the capture dropped {self.dropped} frames"
        holes = sum(self.gaps.get(flow, 0) for flow in streams)
        assert holes == 0, f"{holes} holes in the captured streams"


def _tcp(packets: list[bytes]) -> Iterator[tuple[Flow, int, bytes]]:
    """(flow, sequence number, payload) of every IPv4 TCP segment with a payload."""
    for pkt in packets:
        if len(pkt) < 54 or struct.unpack_from("!H", pkt, 12)[0] != 0x0800 or pkt[23] != 6:
            continue
        l4 = 14 + (pkt[14] & 0x0F) * 4
        end = 14 + struct.unpack_from("!H", pkt, 16)[0]
        sport, dport, seq = struct.unpack_from("!HHI", pkt, l4)
        payload = pkt[l4 + (pkt[l4 + 12] >> 4) * 4 : end]
        if payload:
            yield (pkt[26:30], sport, pkt[30:34], dport), seq, payload
