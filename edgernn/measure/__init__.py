"""Measuring: the bench of every variant on a target, its inputs and timing trials."""
