"""Backends: `llvm` (loops level to LLVM IR), `jit` (the host CPU through MCJIT) and
`entry` (the native CPython entry of a compiled function)."""
