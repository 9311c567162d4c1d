"""Launch settings for resize, in one place so that tests can shrink them.

CPU (see ``cpu.py``): a pass computes tiles of ``CPU_TILE_ROWS`` output rows by
``CPU_TILE_INNER`` contiguous elements (rounded down to whole pixels) into a float64 scratch
tile: 64 x 256 x 8 B = 128 KiB, which stays in L2. The tile rows are also the run length of
the transposed store (64 float32 = four cache lines per pixel for grey images); shorter
runs (16 x 128 tiles) measured up to 1.5x slower at x2 on 512 x 512 x 3. Each pass
splits its tiles into ``CPU_TASKS_PER_THREAD`` tasks per Numba thread (a few per thread so
uneven tiles balance); each task owns one scratch tile, allocated once per call.
``CPU_TRANSPOSE_BLOCK``: pixel block of the transposing copy that starts a width-first resize.
``CPU_WORKSPACE_MAX_BYTES``: intermediates and scratch tiles up to this size are kept per
thread and reused by the next call (fresh large ``np.empty`` buffers page-fault on every
call); larger ones are allocated per call and freed.

``CUDA_THREADS``: threads per block; one thread per output element, consecutive threads
on consecutive inner elements (coalesced reads of each source row).
"""
CPU_TILE_ROWS = 64
CPU_TILE_INNER = 256
CPU_TASKS_PER_THREAD = 4
CPU_TRANSPOSE_BLOCK = 32
CPU_WORKSPACE_MAX_BYTES = 64 << 20
CUDA_THREADS = 256
