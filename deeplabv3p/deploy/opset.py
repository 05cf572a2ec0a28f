"""The ONNX opsets the ONNX export writes, apart from the exporter so that ``deeplabv3p export --help`` can show
the default without importing torch."""

DEFAULT_OPSET = 17
MIN_OPSET = 11  # Resize with align_corners / half_pixel coordinate modes
