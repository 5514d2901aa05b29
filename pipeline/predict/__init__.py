"""Inference with a saved model: ``predictor.Predictor`` labels files, ``inputs`` computes a file's inputs, ``timeline``
a whole file's windows."""
