"""Bit-packing: exact b bits per index, LSB-first, fast enough for a lego-sized level."""
import time

import numpy as np
import pytest
import torch

from engine.bitpack import pack_bits, packed_size, unpack_bits


def test_known_stream_lsb_first():
    # 1 | 2 << 3 | 3 << 6 = 0xD1, then one padding byte holding the top bit of the last value (zero)
    assert pack_bits(torch.tensor([1, 2, 3]), 3) == b"\xd1\x00"
    assert pack_bits(torch.tensor([1, 0, 1, 1, 0, 0, 0, 0, 1]), 1) == b"\x0d\x01"
    assert pack_bits(torch.tensor([0x1234]), 16) == b"\x34\x12"
    assert pack_bits(torch.tensor([0xABC, 0x123]), 12) == b"\xbc\x3a\x12"


@pytest.mark.parametrize("bits", list(range(1, 25)))
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 1001])
def test_round_trip_every_width(bits, n):
    gen = torch.Generator().manual_seed(bits * 1000 + n)
    values = torch.randint(1 << bits, (n,), generator=gen)
    data = pack_bits(values, bits)
    assert len(data) == packed_size(n, bits) == (n * bits + 7) // 8
    out = unpack_bits(data, n, bits)
    assert out.dtype == torch.int32 and torch.equal(out.long(), values)


def test_extremes_and_numpy_input():
    for bits in (1, 5, 8, 13, 16, 24):
        values = np.array([0, (1 << bits) - 1] * 5)
        assert torch.equal(unpack_bits(pack_bits(values, bits), 10, bits).long(), torch.from_numpy(values))


def test_unpack_ignores_trailing_bytes_and_rejects_short_input():
    data = pack_bits(torch.tensor([5, 6, 7]), 3) + b"\xff\xff"
    assert unpack_bits(data, 3, 3).tolist() == [5, 6, 7]
    with pytest.raises(ValueError, match="need 2 bytes, got 1"):
        unpack_bits(b"\x00", 4, 3)


def test_values_out_of_range_are_refused():
    with pytest.raises(ValueError, match="value 8 at position 1"):
        pack_bits(torch.tensor([1, 8]), 3)
    with pytest.raises(ValueError, match="value -1"):
        pack_bits(torch.tensor([-1]), 3)
    with pytest.raises(ValueError, match="bits must be"):
        pack_bits(torch.tensor([0]), 0)


@pytest.mark.parametrize("bits", [4, 7, 8, 12])
def test_lego_sized_level_packs_in_milliseconds(bits):
    values = torch.randint(1 << bits, (400_000,), generator=torch.Generator().manual_seed(0))
    pack_bits(values, bits)  # warm-up
    start = time.perf_counter()
    data = pack_bits(values, bits)
    out = unpack_bits(data, values.numel(), bits)
    elapsed = time.perf_counter() - start
    assert torch.equal(out.long(), values)
    assert elapsed < 0.25, f"pack + unpack of 400k {bits}-bit indices took {elapsed * 1e3:.0f} ms"
