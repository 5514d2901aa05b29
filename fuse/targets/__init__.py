"""What the heads learn besides a class: ``tags`` (multi-label emotion tags) and ``values`` (valence and arousal, fitted
by ``regression``: ridge or kernel ridge heads over the model trees), each its cross-validation over ``fuse.cv`` and its
metrics."""
