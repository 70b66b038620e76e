"""archlab: CNNs, RNNs and Transformers written from their equations, verified, and made fast.

Public API::

    archlab.create_model(name, **config)   # any registered architecture
    archlab.list_models(family=None)       # names, optionally for "cnn" | "rnn" | "transformer" | "mlp"
    archlab.from_pretrained(path)          # archlab or Hugging Face checkpoint directory
    model.save_pretrained(path)            # config.json + model.safetensors
"""

__version__ = "0.1.0"

from archlab.registry import create_model, list_models, model_info  # noqa: E402
from archlab.checkpoint import from_pretrained  # noqa: E402

__all__ = ["__version__", "create_model", "list_models", "model_info", "from_pretrained"]
