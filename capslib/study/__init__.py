"""The cells of both papers: the CapsNet protocols, the baselines, the method registry, the profiles
(grids and priority order), the notebooks' parameters and the papers' published numbers."""
