"""The user's model: loading model.pt, its input spec and signature, writing checkpoints, step models."""
