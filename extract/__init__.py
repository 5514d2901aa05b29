"""Stage one: ``stage.extract_features`` (features, then each net's embeddings or fine-tuning, into the cache);
``clip_embedding`` for one clip outside a cache."""
