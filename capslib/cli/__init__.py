"""``python -m capslib``: the command line."""
