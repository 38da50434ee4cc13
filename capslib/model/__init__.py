"""The CapsNet of Sabour et al. (squash, dynamic routing), its losses, and the anomaly scores and
metrics of both papers (higher = more anomalous)."""
