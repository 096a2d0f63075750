"""The operator catalog: pre/post-processing ops with an eager reference and an exact ONNX lowering.

One module per family: ``onnxpipe.ops.image``, ``classify``, ``detect``, ``sequence``, ``text``.
"""
