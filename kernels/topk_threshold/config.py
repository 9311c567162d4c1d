"""Launch settings for topk_threshold, in one place so that tests can shrink them.

``CPU_MAX_FIRST_BITS``: widest first radix digit of the CPU select. The first pass histograms
the top ``b`` bits of every key of a row (sign + exponent + a few mantissa bits), with ``b``
grown with the row length (about log2(n) - 3, at least 8) so that the histogram
(2**b int64 = 32 KiB at b = 12) stays in L1 and its scan costs less than the row pass.

``CUDA_THREADS``: threads per block of the GPU select (one block per row, 256-bin shared
histogram, 8 bits per pass). Must be a power of two (the block prefix sum assumes it).

``CUDA_ROW_MAX``: rows longer than this take the multi-block path (``CUDA_BLOCKS_PER_ROW``
chunks of the row, partial histograms merged in global memory). Tests shrink both.
"""
CPU_MAX_FIRST_BITS = 12
CUDA_THREADS = 256
CUDA_ROW_MAX = 65536
CUDA_CHUNK = 16384
