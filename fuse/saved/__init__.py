"""The saved fusion model: ``model`` (``train_final``, ``save_fusion_model``, ``load_fusion_model``), ``check`` (every
array checked before use), ``targets`` (the tag and value layers)."""
