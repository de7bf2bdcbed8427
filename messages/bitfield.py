"""Which pieces a peer holds, as a compact bit set that travels as base64 text."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator

from .errors import Code, ProtocolError


class Bitfield:
    """A fixed-size set of piece indices; bit i set means piece i is held."""

    __slots__ = ("_bits", "_count", "size")

    def __init__(self, size: int, bits: bytes | bytearray | None = None) -> None:
        self.size = size
        nbytes = (size + 7) // 8
        self._bits = bytearray(bits) if bits is not None else bytearray(nbytes)
        if len(self._bits) != nbytes:
            raise ProtocolError(Code.BAD_ARGS, f"bitfield of {len(self._bits)} bytes for {size} pieces")
        if size % 8 and self._bits and self._bits[-1] & (0xFF >> (size % 8)):
            raise ProtocolError(Code.BAD_ARGS, "bitfield has bits set past its last piece")
        self._count = sum(bin(b).count("1") for b in self._bits)

    @classmethod
    def full(cls, size: int) -> Bitfield:
        bf = cls(size)
        for i in range(size):
            bf.add(i)
        return bf

    @classmethod
    def from_indices(cls, size: int, indices: Iterable[int]) -> Bitfield:
        bf = cls(size)
        for i in indices:
            bf.add(i)
        return bf

    def add(self, i: int) -> bool:
        """Set bit i; returns True when it was not set before."""
        if not 0 <= i < self.size:
            raise IndexError(f"piece {i} out of range 0..{self.size - 1}")
        byte, mask = i >> 3, 0x80 >> (i & 7)
        if self._bits[byte] & mask:
            return False
        self._bits[byte] |= mask
        self._count += 1
        return True

    def discard(self, i: int) -> None:
        byte, mask = i >> 3, 0x80 >> (i & 7)
        if self._bits[byte] & mask:
            self._bits[byte] &= ~mask & 0xFF
            self._count -= 1

    def __contains__(self, i: object) -> bool:
        return isinstance(i, int) and 0 <= i < self.size and bool(self._bits[i >> 3] & (0x80 >> (i & 7)))

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[int]:
        return (i for i in range(self.size) if self._bits[i >> 3] & (0x80 >> (i & 7)))

    def missing(self) -> Iterator[int]:
        return (i for i in range(self.size) if not self._bits[i >> 3] & (0x80 >> (i & 7)))

    @property
    def complete(self) -> bool:
        return self._count == self.size

    def copy(self) -> Bitfield:
        return Bitfield(self.size, bytes(self._bits))

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Bitfield) and self.size == other.size and self._bits == other._bits

    def to_bytes(self) -> bytes:
        return bytes(self._bits)

    def encode(self) -> str:
        return self.text_of(self._bits)

    @staticmethod
    def text_of(raw: bytes | bytearray) -> str:
        """The wire text of raw bitfield bytes (as stored), without building a Bitfield."""
        return base64.b64encode(bytes(raw)).decode("ascii")

    @classmethod
    def decode(cls, size: int, text: object) -> Bitfield:
        if not isinstance(text, str):
            raise ProtocolError(Code.BAD_ARGS, "bitfield must be a base64 string")
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError(Code.BAD_ARGS, "bitfield is not valid base64") from None
        return cls(size, raw)
