"""Design-space exploration on Optuna (grid or NSGA-II), resumable and distributed."""
