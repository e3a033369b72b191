"""Machinery shared by the quantization methods: the int8 and packed module kinds, uniform and int8
quantization maths, fake quantization for training, calibration, embeddings, the accuracy gate."""
