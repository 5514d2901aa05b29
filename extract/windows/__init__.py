"""Whole files as windows: the plan of each file's windows (``plan``) and the cache of their rows (``cache``)."""
