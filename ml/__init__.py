"""The ticket classifier: data, train, calibrate, export (ONNX + int8), evaluate, registry, serving.

Nothing is imported here: `ml.serving` and `ml.registry` must load in the stream
environment, which has no torch.
"""
