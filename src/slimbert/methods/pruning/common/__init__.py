"""Machinery shared by the pruning methods: masked linears and their bake, mask functions, the cubic
schedule and its callback, sparse storage, structured unit scoring and removal, layer dropping."""
