"""Fine-tuning the nets per fold: the training loop (``train``), the units of (net, fold) and their jobs (``units``,
``jobs``), and the optimizer study (``study``)."""
