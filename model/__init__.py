"""The LLaMA network: configuration presets and the torch module (torch and stdlib only)."""

from model.config import PRESETS, LlamaConfig
from model.llama import KVCache, Llama

__all__ = ["PRESETS", "KVCache", "Llama", "LlamaConfig"]
