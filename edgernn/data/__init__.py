"""Bundled datasets and the .npz evaluation-data format."""
