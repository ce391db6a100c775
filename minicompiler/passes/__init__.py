"""Lowering passes over the loop-nest IR, one per file."""
