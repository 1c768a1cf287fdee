"""Training: the driver every training stage runs, loss terms, checkpoints, and the teacher's,
general distillation's and teacher logits' jobs."""
