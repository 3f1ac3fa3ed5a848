"""Backends: `llvm` (loops level to LLVM IR), `jit` (the host CPU through MCJIT), `entry`
(the native CPython entry of a compiled function), `runtime` (allocator, threads);
for NVIDIA GPUs `ptx` (kernels and their host program), `libdevice` and `fallback` (math),
`cuda` (the driver and the host runtime; imported only when a GPU function first runs)."""
