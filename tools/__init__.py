"""Command-line tools: `irkit-opt`."""
