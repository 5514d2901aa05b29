"""Speed figures, each beside a baseline measured in the same run (``mvemo bench``)."""
