"""Launch settings for the NMF kernels, in one place so that tests can shrink them.

``CPU_ROW_CHUNK``: rows of W (or columns of H) updated by one parallel task of the fused
update passes. A task keeps one r-long (or r x chunk) denominator buffer in cache.

``CPU_COL_BLOCK``: columns of H whose denominator ``(W^T W) H[:, block]`` one task forms at
once (r x block values of the working set, 32 x 256 x 8 B = 64 KiB).

``DENSE_BLOCK_BYTES``: size of the bounded (rows x n) block of ``WH`` used for objective
evaluations and the sparse general-beta denominators, so that no m x n array is formed.

``DENSE_TASK_ROWS``: rows of W per block of the dense KL passes (WH block, weighting, its
numerator while the block is in cache) and of the objective's WH blocks.

``CPU_SERIAL_WORK``: below this many multiply-adds per iteration (m n r dense, nnz r
sparse) a fit runs its Numba kernels on one thread: waking the thread pool costs more than
the work, the more so on a loaded machine (``cpu.threads_for``).

``CPU_TILE_COLS``, ``CPU_TILE_PANEL``: unmasked sparse KL regroups V's entries into tiles of
``CPU_TILE_COLS`` columns (a tile of H^T, cols x r, stays in L2 while it is gathered); the W
update's parallel tasks take panels of ``CPU_TILE_PANEL`` rows (their r-long numerators
stay in cache across the tiles). CPU_TILE_COLS is rounded down to a power of two <= 65536
(local column indices are uint16); 0 selects the plain CSR / CSC sweeps.

``DENSE_VT_MIN_ITER``, ``DENSE_VT_MAX_BYTES``: plain dense Frobenius in float32 reads W^T V
from a transposed copy of V (see ``dense.frob_iterate``) when a fit has at least
``DENSE_VT_MIN_ITER`` iterations to run (the copy costs about half an iteration) and V has
at most ``DENSE_VT_MAX_BYTES`` bytes (the copy doubles V's memory); 0 bytes turns it off.

``CUDA_THREADS``: threads per block of the elementwise / per-row numba.cuda kernels.
``CUDA_GEMM_TILE``: tile edge of the fallback numba.cuda GEMM (used without CuPy and under
the simulator); with CuPy, GEMMs go to cuBLAS.
"""
CPU_ROW_CHUNK = 64
CPU_COL_BLOCK = 256
DENSE_BLOCK_BYTES = 4 << 20
CUDA_THREADS = 128
CPU_SERIAL_WORK = 1 << 22
DENSE_TASK_ROWS = 64
CUDA_GEMM_TILE = 16
CPU_TILE_COLS = 1024
CPU_TILE_PANEL = 1024
DENSE_VT_MIN_ITER = 4
DENSE_VT_MAX_BYTES = 1 << 28  # 256 MiB: larger inputs keep their memory and take the strided product
