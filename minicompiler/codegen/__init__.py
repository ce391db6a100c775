"""Code generation: the LLVM emitter."""
