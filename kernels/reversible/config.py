"""Launch settings of the reversible-coupling kernels, in one place so tests can shrink them.

``CPU_PARALLEL_MIN``: below this many elements the serial Numba kernel runs (a parallel
region costs more than it saves on a few thousand elements).

``CUDA_THREADS``: threads per block. ``CUDA_MAX_BLOCKS``: cap on the grid; every kernel is a
grid-stride loop, so a small cap (tests set it to 2) exercises threads that handle several
elements.
"""
CPU_PARALLEL_MIN = 1 << 15
CUDA_THREADS = 256
CUDA_MAX_BLOCKS = 4096
