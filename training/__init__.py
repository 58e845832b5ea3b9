"""Trainer, data loader, optimizer, checkpoints, launchers and evaluation."""
