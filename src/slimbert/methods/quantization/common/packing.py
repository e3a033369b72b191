"""Bit-packing of small unsigned codes into bytes, so that b-bit weights take b bits on disk.

``pack_codes`` writes n codes in [0, 2^b) as a little-endian bit stream: code i occupies bits
``i*b .. i*b + b - 1`` of the stream, and the stream is cut into bytes (uint8, ceil(n*b/8)).
Any b in 1..8 works, including widths that straddle bytes (3, 5, 6, 7 bits).
"""

from __future__ import annotations

import torch

from slimbert.methods.quantization.common.uniform import check_bits


def packed_size(n: int, bits: int) -> int:
    """Bytes needed for ``n`` codes of ``bits`` bits."""
    return (n * bits + 7) // 8


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Codes (any shape, integer values in [0, 2^bits)) -> packed bytes (ceil(n * bits / 8),) uint8."""
    check_bits(bits)
    flat = codes.reshape(-1).to(torch.int64)
    n = flat.numel()
    if n and (int(flat.min()) < 0 or int(flat.max()) >= 2 ** bits):
        raise ValueError(f"codes must lie in [0, {2 ** bits}) to pack into {bits} bits, "
                         f"got [{int(flat.min())}, {int(flat.max())}]")
    # Eight codes fill exactly `bits` bytes: gather them into one 64-bit word (8 * bits <= 64 bits),
    # then cut the word into bytes. Memory stays at one int64 per code.
    blocks = torch.cat([flat, flat.new_zeros((-n) % 8)]).reshape(-1, 8)  # (m, 8)
    words = (blocks << (torch.arange(8, dtype=torch.int64) * bits)).sum(dim=1)  # (m,)
    if bits == 8:  # 64-bit words overflow int64's sign bit; bytes are the codes themselves
        return flat.to(torch.uint8)
    out = (words[:, None] >> (torch.arange(bits, dtype=torch.int64) * 8)) & 0xFF  # (m, bits)
    return out.reshape(-1)[: packed_size(n, bits)].to(torch.uint8)


def unpack_codes(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """Inverse of :func:`pack_codes`: the first ``n`` codes, (n,) int64."""
    check_bits(bits)
    if packed.numel() != packed_size(n, bits):
        raise ValueError(f"{packed.numel()} packed bytes cannot hold exactly {n} codes of {bits} bits "
                         f"(expected {packed_size(n, bits)})")
    data = packed.reshape(-1).to(torch.int64)
    if bits == 8:
        return data
    data = torch.cat([data, data.new_zeros((-data.numel()) % bits)]).reshape(-1, bits)  # (m, bits) bytes
    words = (data << (torch.arange(bits, dtype=torch.int64) * 8)).sum(dim=1)  # (m,)
    codes = (words[:, None] >> (torch.arange(8, dtype=torch.int64) * bits)) & (2 ** bits - 1)  # (m, 8)
    return codes.reshape(-1)[:n]
