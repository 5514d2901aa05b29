"""Stage two: ``stage.run_cv`` (the CV report) and ``stage.fuse_cache`` (the report, then the saved model), over the
models of ``models`` composed by ``compose``; ``saved.model.load_fusion_model`` reads a saved model. Rooms: ``heads``,
``targets``, ``report``, ``saved``; the CV core (``loop``, ``cv``, ``compose``, ``models``, ``grammar``, ``inputs``,
``selection``, ``metrics``, ``provenance``) at the top."""
