"""The run folder: its file names, checkpoints, resume state, and how a whole folder is made or replaced."""
