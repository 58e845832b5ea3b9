"""Trainer, data loader, launchers (the model and tokenizer issues)."""
