"""Launch settings for gmm, in one place so that tests can shrink them.

``CPU_CHUNK``: pixels handled by one parallel task of the Numba CPU kernel (the K
components' parameters, K*(D*D + D + 1) values, stay in L1 while a task walks its pixels).

``CUDA_THREADS``: threads per block of the numba.cuda kernel (one thread per pixel).

``MAX_DIM``: the largest feature dimension D the CUDA kernel supports (its per-thread
difference vector is a fixed-size local array); colour models use D = 3 (RGB) or 1 (gray).
"""
CPU_CHUNK = 2048
CUDA_THREADS = 128
MAX_DIM = 8
