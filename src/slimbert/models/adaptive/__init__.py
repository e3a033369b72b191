"""Input-adaptive inference: one encoder runner shared by early exit and token dropping (survey section 3.5).

* :mod:`.runner`: the loop over encoder layers that lets examples leave the batch and shortens sequences;
* :mod:`.segments`: the model cut into segments (embeddings, each layer, each exit head, the task head) on
  PyTorch (the ONNX Runtime segments live in :mod:`slimbert.export.onnx_segments`);
* :mod:`.exit_heads`, :mod:`.criteria`, :mod:`.token_dropping`: the pieces the runner combines.
"""
