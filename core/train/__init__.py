"""Training recipes for the weights the product ships (`python -m core.train <recipe> ...`)."""
