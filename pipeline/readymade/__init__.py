"""Ready-made models: shipped heads over the published nets, each with the recipe that rebuilds it."""
