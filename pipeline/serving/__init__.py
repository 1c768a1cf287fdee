"""Serving: export (HF folder, ONNX, int8), the runtimes behind one predictor interface, model cards
and `predict`."""
