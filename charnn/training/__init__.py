"""Training any kind of run: the loop, starting and resuming a run, processes under torchrun."""
