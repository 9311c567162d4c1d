"""Launch settings for topk_threshold, in one place so that tests can shrink them.

``CPU_FIRST_BITS_32`` / ``CPU_FIRST_BITS_64``: width of the first radix digit of the CPU
select for float32 keys (31 bits) and 64-bit keys (float64, complex magnitudes). The first
pass histograms the top bits (exponent + 3 mantissa bits: bins of 1/8 octave), walking and
clearing only the bins that the row uses, so the crossing bin usually holds a handful of
candidates, which a guarded quickselect finishes.

``CPU_SHORT_ROW_MAX`` / ``CPU_SHORT_ROW_RATIO``: rows of at most that many entries with
``RATIO * (k + 1) <= n`` take the short-row select (``cpu._group_select``: a lower bound from
2 (k + 1) strided group maxima, then a quickselect among the few entries above it) instead
of the radix select, whose histogram passes dominate rows of a few hundred entries.
Tests set ``CPU_SHORT_ROW_MAX = 0`` to run the radix path on the same inputs.

``CPU_SMALL_IMAGE_CHUNK``: the fused small-image DCT/FFT projections run their first product
(the transform along w) for this many images at once: one (chunk h x w) x (w x .) BLAS
call instead of one per image (28x28 float32: 1.55K instead of 2.1K cycles per image at
16; at 64 the chunk no longer stays in L1/L2 and it is slower than per image).

``CUDA_THREADS``: threads per block of the GPU select (one block per row, 256-bin shared
histogram, 8 bits per pass). Must be a power of two (the block prefix sum assumes it).

``CUDA_ROW_MAX``: rows longer than this take the multi-block path (``CUDA_BLOCKS_PER_ROW``
chunks of the row, partial histograms merged in global memory). Tests shrink both.
"""
CPU_FIRST_BITS_32 = 11
CPU_SHORT_ROW_MAX = 4096
CPU_SHORT_ROW_RATIO = 8
CPU_FIRST_BITS_64 = 14
CPU_SMALL_IMAGE_CHUNK = 16
CUDA_THREADS = 256
CUDA_ROW_MAX = 65536
CUDA_CHUNK = 16384
