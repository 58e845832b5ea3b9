"""The LLaMA network (the model issue)."""
