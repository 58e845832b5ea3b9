"""The LLaMA network: configuration presets, the torch module and generation (torch and stdlib
only; the HF conversion, `model.hf`, also needs safetensors and is imported on its own)."""

from model.config import PRESETS, LlamaConfig
from model.generate import Generation, Generator, Sampling
from model.llama import KVCache, Llama

__all__ = ["PRESETS", "Generation", "Generator", "KVCache", "Llama", "LlamaConfig", "Sampling"]
