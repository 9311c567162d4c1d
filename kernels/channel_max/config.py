"""Launch settings for channel_max, in one place so that tests can shrink them.

``CPU_CHUNK``: pixels of one image handled by one parallel task. The task keeps a running
maximum for CHUNK pixels while it streams through the C channel planes, so the running
maximum (and argmax) stays in L1/L2 cache: 4096 float32 + 4096 int32 = 32 KiB.
The backward shrinks it to keep chunk x C values of g within ~256 KiB.

``CUDA_THREADS``: threads per block; one thread per output pixel, looping over channels,
so consecutive threads read consecutive addresses of each channel plane (coalesced).
"""
CPU_CHUNK = 4096
CUDA_THREADS = 256
