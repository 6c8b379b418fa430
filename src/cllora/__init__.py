"""cllora: measure how non-IID text (length and quantity skew) affects federated LoRA fine-tuning."""

__version__ = "0.1.0"
