"""Machinery shared by the factorization methods: low-rank linears, Fisher weights, rank allocation."""
