"""Launch settings for resize, in one place so that tests can shrink them.

CPU (see ``cpu.py``): a pass computes tiles of ``CPU_TILE_ROWS`` output rows by
``CPU_TILE_INNER`` contiguous elements (rounded down to whole pixels), one row at a time
in a float64 row that stays in L1, rounded into a staging tile of the output dtype when the
pass writes transposed (32 x 768 float32 = 96 KiB, in L2). The tile rows are also the run
length of the transposed store: short tiles keep the staging tile in L2, long rows keep
the stores contiguous. Each pass splits its tiles into ``CPU_TASKS_PER_THREAD`` tasks per
Numba thread (a few per thread so uneven tiles balance); each task owns one float64 row
and one staging tile, kept per thread across calls (``cpu._buffer``).
``CPU_TRANSPOSE_BLOCK``: pixel block of the transposing copy that starts a width-first resize.
``CPU_WORKSPACE_MAX_BYTES``: intermediates and scratch tiles up to this size are kept per
thread and reused by the next call (fresh large ``np.empty`` buffers page-fault on every
call); larger ones are allocated per call and freed. At most four slots (scratch, staging,
transposing copy, first-pass intermediate), so a thread that resized keeps at most about
4 x 16 MiB (in practice one intermediate: 3 MiB for a 512 x 512 x 3 float32 image); a
16 MiB intermediate holds a 1024 x 1024 x 3 float32 image's half-resized copy.

``CUDA_THREADS``: threads per block; one thread per output element, consecutive threads
on consecutive inner elements (coalesced reads of each source row).
"""
CPU_TILE_ROWS = 32
CPU_TILE_INNER = 768
CPU_TASKS_PER_THREAD = 4
CPU_TRANSPOSE_BLOCK = 32
CPU_WORKSPACE_MAX_BYTES = 16 << 20
CUDA_THREADS = 256
