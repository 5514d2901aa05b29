"""The saved fusion model: ``final`` (``train_final``: fitted on every clip), ``model`` (``save_fusion_model``,
``load_fusion_model``), ``records`` (the file format), ``check`` (every array checked before use), ``targets`` (the
tag and value layers)."""
