"""crmlake's benchmark harness, outside the runtime package: run ``python -m benchmarks --help``."""
