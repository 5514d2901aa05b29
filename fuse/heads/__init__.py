"""Fusion heads, scikit-learn estimators: ``linear`` (logistic, softmax), ``families`` (``make_head``: LDA,
PCA-logistic, SVMs; chosen on inner folds by ``selected``), ``patches`` (patch-level heads), ``upper`` (the music
encoders' layers above a cut, fine-tuned)."""
