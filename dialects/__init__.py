"""irkit's dialects, one per module: `ik` (tensor level), `ikf` (fused level),
and the upstream `arith` with the one op xDSL lacks."""
