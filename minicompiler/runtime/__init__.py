"""JIT compilation and the callable Kernel."""
