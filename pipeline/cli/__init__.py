"""The command line: ``mvemo`` and ``mvemo-cv``, thin layers over library functions."""
