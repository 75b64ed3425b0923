"""What the encoder tasks (classify, tag) share: warm starts, whole-text batches, scores."""
