"""The HDF5 feature cache: ``read.Cache`` reads it, ``store.CacheWriter`` writes it under ``lock.CacheLock``;
``maintain`` and ``verify`` check and repair it."""
