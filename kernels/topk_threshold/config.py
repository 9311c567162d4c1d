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
call instead of one per image, which pays BLAS's per-call cost once per chunk. The chunk
must stay in L1/L2: too large a chunk is slower than one product per image.

``DCT_MATMUL_MAX``: the largest axis length for which the orthonormal DCT of real numpy
input is computed as matrix products (one GEMM over all rows per axis, or the fused
small-image kernels: transform, select and inverse per image while it is in cache)
instead of ``scipy.fft.dctn``'s FFT-based transform. For small sides the products are
faster than an FFT and their error is that of one float matrix product; past this size
the O(n^2) products lose to the O(n log n) FFT. The same bound sends small real images to
the fused real-DFT kernel. Tests set it to 0 to run the FFT-library path on the same input.

``SERIAL_GEMM_MNK``: OpenBLAS runs a GEMM on one thread when M * N * K <= 65536 *
GEMM_MULTITHREAD_THRESHOLD (4 in its default build). The fused small-image kernels call BLAS
from Numba's parallel tasks; while their largest product stays below this bound (images up
to about 40 x 40) BLAS cannot start threads of its own, and the kernels run without the
one-BLAS-thread context, whose limit and restore (threadpoolctl) cost a fixed amount per
call. Above it the context is taken.

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
DCT_MATMUL_MAX = 64
SERIAL_GEMM_MNK = 65536
