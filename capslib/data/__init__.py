"""Datasets (the digits, the MNIST family, smallNORB), the two protocols' train/test splits, and
folders of your own images."""
