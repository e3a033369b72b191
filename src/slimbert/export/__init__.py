"""Export: ONNX (with ONNX Runtime fusions and registered graph transforms such as int8)."""
