"""Bit-packing of codebook indices: exactly b bits per value, LSB-first, vectorised (no per-element Python loop).

Stream convention (the file format and any other reader rely on it): value i occupies stream bits [i*b, (i+1)*b);
stream bit j is bit (j % 8) of byte j // 8; within a value, its least significant bit comes first. The last byte is
padded with zero bits. So for b = 8 the stream is the values as bytes, for b = 16 little-endian uint16.
"""
from __future__ import annotations

import numpy as np
import torch

MAX_BITS = 24


def packed_size(n: int, bits: int) -> int:
    """Bytes that `n` values of `bits` bits take: ceil(n * bits / 8)."""
    return (n * bits + 7) // 8


def pack_bits(values: torch.Tensor | np.ndarray, bits: int) -> bytes:
    """Packs integers into a byte string, `bits` bits each (LSB-first).

    values: int [n], each in [0, 2^bits); bits: 1..24. Returns bytes of length `packed_size(n, bits)`.
    Raises ValueError naming the first value out of range.
    """
    if not 1 <= bits <= MAX_BITS:
        raise ValueError(f"pack_bits: bits must be in 1..{MAX_BITS}, got {bits}")
    v = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    v = v.reshape(-1).astype(np.int64, copy=False)
    if v.size and (v.min() < 0 or v.max() >= (1 << bits)):
        bad = int(np.flatnonzero((v < 0) | (v >= (1 << bits)))[0])
        raise ValueError(f"pack_bits: value {int(v[bad])} at position {bad} does not fit in {bits} bits")
    if bits == 8:
        return v.astype(np.uint8).tobytes()
    if bits == 16:
        return v.astype("<u2").tobytes()
    # 8 consecutive values fill exactly `bits` bytes: build each group's bytes lane by lane (8 x <= 4 vector ops).
    n = v.size
    groups = (n + 7) // 8
    grouped = np.zeros(groups * 8, dtype=np.uint64)
    grouped[:n] = v
    grouped = grouped.reshape(groups, 8)
    out = np.zeros((groups, bits), dtype=np.uint8)
    for i in range(8):
        first_bit = i * bits
        shifted = grouped[:, i] << np.uint64(first_bit & 7)
        for j in range(((first_bit & 7) + bits + 7) // 8):
            out[:, (first_bit >> 3) + j] |= ((shifted >> np.uint64(8 * j)) & np.uint64(255)).astype(np.uint8)
    return out.reshape(-1)[: packed_size(n, bits)].tobytes()


def unpack_bits(data: bytes | memoryview, n: int, bits: int) -> torch.Tensor:
    """Inverse of `pack_bits`: the first `n` values of `bits` bits each -> int32 [n] in [0, 2^bits).

    data must hold at least `packed_size(n, bits)` bytes (ValueError otherwise; nothing is allocated before that check).
    """
    if not 1 <= bits <= MAX_BITS:
        raise ValueError(f"unpack_bits: bits must be in 1..{MAX_BITS}, got {bits}")
    need = packed_size(n, bits)
    if n < 0 or len(data) < need:
        raise ValueError(f"unpack_bits: {n} values of {bits} bits need {need} bytes, got {len(data)}")
    raw = np.frombuffer(data, dtype=np.uint8, count=need)
    if bits == 8:
        out = raw.astype(np.int32)
    elif bits == 16:
        out = raw.view("<u2").astype(np.int32)
    else:
        # Gather the (up to) 4 bytes holding each value into a 32-bit word, then shift and mask: b + 7 <= 31.
        padded = np.zeros(need + 4, dtype=np.uint32)
        padded[:need] = raw
        start = np.arange(n, dtype=np.int64) * bits
        byte = start >> 3
        word = padded[byte] | (padded[byte + 1] << 8) | (padded[byte + 2] << 16) | (padded[byte + 3] << 24)
        out = ((word >> (start & 7).astype(np.uint32)) & np.uint32((1 << bits) - 1)).astype(np.int32)
    return torch.from_numpy(out)
