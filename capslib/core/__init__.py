"""The ground floor: the study's errors, the validated cell configuration (:class:`~capslib.core.config.CellSpec`)
and provenance (commit, device). Imports nothing of capslib above it."""
