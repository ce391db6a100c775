"""Ways to define tensors: compute() expressions and einsum."""
