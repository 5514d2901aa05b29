"""The handcrafted feature sets (their registry: ``registry``) and the signal analysis they share (``spectra``,
``lpc``)."""
