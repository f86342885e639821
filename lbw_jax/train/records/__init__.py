"""What a run records besides checkpoints: metrics and plots, speed and MFU, the machine, and the libraries' own log."""
