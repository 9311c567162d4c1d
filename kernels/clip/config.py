"""Launch settings for the adjustable gradient clipping, in one place so tests can shrink them.

``CPU_CHUNK``: elements per parallel task. Every tensor is cut into chunks of at most this
many elements, so one task never spans two tensors and big and small tensors balance.

``CPU_BLOCK``: elements counted before a block is (only if needed) clamped, while it is in
L1 (a power of two, at most 2**24: the count is a float32 sum).

``CPU_PARALLEL_MIN``: below this many elements in all, the CPU kernel runs on the calling
thread (waking the thread pool costs more than clipping a few thousand elements).

``CUDA_THREADS``: threads per block (a power of two: the per-block count of clipped elements
is a shared-memory tree reduction). ``CUDA_CHUNK``: elements per block; each thread strides
through its block's chunk.

``MAX_TENSORS_PER_LAUNCH``: tensors handed to one kernel call. The tensors travel as a tuple
(padded to the next power of two with a dummy, so a handful of compiled variants serve
every model); longer lists are split into several calls, as torch's multi-tensor apply does.
"""
CPU_CHUNK = 1 << 16
CPU_BLOCK = 1 << 11
CPU_PARALLEL_MIN = 1 << 15
CUDA_THREADS = 256
CUDA_CHUNK = 1 << 14
MAX_TENSORS_PER_LAUNCH = 64
