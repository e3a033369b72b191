"""Symmetric uniform b-bit quantization, per tensor, per row, or per group of rows/columns.

``q = clamp(round(x / s), -Q, Q)`` with ``Q = 2^(b-1) - 1`` and ``s = max|x| / Q`` over the group;
dequantization is ``q * s`` (Jacob et al. 2018; Q8BERT, Zafrir et al. 2019, uses b = 8). The grid
is symmetric, so 2 bits give the ternary grid {-s, 0, s} (TernaryBERT) and 8 bits the int8 grid
[-127, 127]. Round-to-nearest keeps the error of every in-range value within ``s / 2``.

Groups (Q-BERT's group-wise quantization, Shen et al. 2020) are contiguous blocks of a matrix
(R, C), ``row_block`` rows by ``col_block`` columns, each with its own scale (None: the whole
dimension). ``row_block=1`` is per output channel; Q-BERT's head groups are ``head_size`` rows
for q/k/v and ``head_size`` columns for the attention output; ONNX Runtime's 4-bit blocks are
1 row by 32 columns. Row r is in row group ``r // row_block``; the last block may be shorter.
Scales and other per-group values are (Gr, Gc) tensors with ``Gr = ceil(R / row_block)``.
"""

from __future__ import annotations

import torch

from slimbert.errors import ConfigError

MIN_BITS, MAX_BITS = 1, 8


def check_bits(bits: int, name: str = "bits") -> None:
    """Raise :class:`ConfigError` unless ``1 <= bits <= 8`` (what the packed storage and kernels support)."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise ConfigError(f"{name} must be an integer in [{MIN_BITS}, {MAX_BITS}], got {bits!r}")


def qmax(bits: int) -> int:
    """Largest code of the symmetric b-bit grid: 127 for 8 bits, 7 for 4, 1 for 2 (ternary).

    One bit has no symmetric grid with a zero; it is treated as the sign grid {-s, +s}
    (binary weights), see :func:`quantize_symmetric`.
    """
    check_bits(bits)
    return max(1, 2 ** (bits - 1) - 1)


def symmetric_scale(x: torch.Tensor, dim: int | None, bits: int = 8) -> torch.Tensor:
    """``max|x| / qmax(bits)`` over ``dim`` (kept as a size-1 dim), or over all of x when dim is None.

    One bit uses ``mean|x|`` instead, the least-squares scale of the sign grid (XNOR-Net).
    """
    if bits == 1:
        return (x.abs().mean() if dim is None else x.abs().mean(dim=dim, keepdim=True)).clamp_min(1e-12)
    amax = x.abs().amax() if dim is None else x.abs().amax(dim=dim, keepdim=True)
    return (amax / qmax(bits)).clamp_min(1e-12)


def quantize_symmetric(x: torch.Tensor, scale: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Integer codes (int8, in [-qmax, qmax]) of ``x`` for ``scale`` (broadcastable to x).

    With 1 bit the codes are the signs (-1 or +1; zero maps to +1).
    """
    if bits == 1:
        return torch.where(x < 0, -1, 1).to(torch.int8)
    q = qmax(bits)
    return torch.clamp(torch.round(x / scale), -q, q).to(torch.int8)


def block_size(size: int, block: int | None) -> int:
    """The block length along a dimension of ``size`` (None: the whole dimension)."""
    if block is None:
        return size
    if block < 1:
        raise ConfigError(f"a group block must hold at least one row/column, got {block}")
    return min(block, size)


def num_groups(size: int, block: int | None) -> int:
    return -(-size // block_size(size, block))


def group_index(size: int, block: int | None, device=None) -> torch.Tensor:
    """Group of each of ``size`` positions cut into contiguous blocks of ``block``: (size,) long."""
    return torch.arange(size, device=device) // block_size(size, block)


def _even_blocks(rows: int, cols: int, row_block: int | None, col_block: int | None) -> tuple[int, int] | None:
    """(row block, column block) lengths when both divide the matrix evenly (the fast, reshape-only path)."""
    rb, cb = block_size(rows, row_block), block_size(cols, col_block)
    return (rb, cb) if rows % rb == 0 and cols % cb == 0 else None


def expand_groups(values: torch.Tensor, row_block: int | None, col_block: int | None, rows: int, cols: int
                  ) -> torch.Tensor:
    """Per-group values (Gr, Gc) broadcast to every element of an (R, C) matrix."""
    even = _even_blocks(rows, cols, row_block, col_block)
    if even is not None:
        gr, gc = values.shape
        return values[:, None, :, None].expand(gr, even[0], gc, even[1]).reshape(rows, cols)
    r = group_index(rows, row_block, values.device)
    c = group_index(cols, col_block, values.device)
    return values[r][:, c]


def group_reduce(values: torch.Tensor, row_block: int | None, col_block: int | None, reduce: str = "amax"
                 ) -> torch.Tensor:
    """Reduce ``values`` (R, C) over each group: (Gr, Gc).

    ``reduce`` is one of "amax", "amin", "sum", "mean".
    """
    rows, cols = values.shape
    gr, gc = num_groups(rows, row_block), num_groups(cols, col_block)
    even = _even_blocks(rows, cols, row_block, col_block)
    if even is not None:  # reshape to (Gr, rb, Gc, cb) and reduce the block dims with native kernels
        blocks = values.reshape(gr, even[0], gc, even[1])
        return getattr(blocks, reduce)(dim=(1, 3))
    r = group_index(rows, row_block, values.device)
    c = group_index(cols, col_block, values.device)
    flat_group = (r[:, None] * gc + c[None, :]).reshape(-1)  # (R*C,)
    out = torch.zeros(gr * gc, dtype=values.dtype, device=values.device)
    out = out.scatter_reduce(0, flat_group, values.reshape(-1), reduce=reduce, include_self=False)
    return out.reshape(gr, gc)


def group_scales(w: torch.Tensor, bits: int, row_block: int | None, col_block: int | None = None) -> torch.Tensor:
    """Symmetric scales (Gr, Gc) of a matrix ``w`` (R, C) quantized group-wise at ``bits``."""
    magnitude = w.detach().abs()
    if bits == 1:
        return group_reduce(magnitude, row_block, col_block, "mean").clamp_min(1e-12)
    return (group_reduce(magnitude, row_block, col_block) / qmax(bits)).clamp_min(1e-12)


def quantize_groups(w: torch.Tensor, bits: int, row_block: int | None, col_block: int | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes (R, C) int8 and scales (Gr, Gc) of ``w`` quantized group-wise at ``bits``."""
    scales = group_scales(w, bits, row_block, col_block)
    codes = quantize_symmetric(w.detach().float(), expand_groups(scales, row_block, col_block, *w.shape), bits)
    return codes, scales


def dequantize_groups(codes: torch.Tensor, scales: torch.Tensor, row_block: int | None, col_block: int | None = None
                      ) -> torch.Tensor:
    """``codes * scale`` of each element's group: (R, C) float."""
    return codes.float() * expand_groups(scales.float(), row_block, col_block, *codes.shape)
