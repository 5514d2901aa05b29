"""Pretrained weight files: the published files and their lookup (``registry``), reading them (``io``), fetching them
(``fetch``)."""
