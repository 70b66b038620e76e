"""archlab: CNNs, RNNs and Transformers written from their equations, verified, and made fast.

Public API::

    archlab.create_model(name, **config)   # any registered architecture
    archlab.list_models(family=None)       # names, optionally for "cnn" | "rnn" | "transformer" | "mlp"
    archlab.from_pretrained(path)          # archlab or Hugging Face checkpoint directory
    model.save_pretrained(path)            # config.json + model.safetensors
"""

__version__ = "0.1.0"

__all__ = ["__version__", "create_model", "list_models", "model_info", "from_pretrained"]

# The API is imported on first use (PEP 562), so that `import archlab` -- and the command line's
# --help, --version and `list` -- do not wait for torch.
_LAZY = {"create_model": "archlab.registry", "list_models": "archlab.registry", "model_info": "archlab.registry",
         "from_pretrained": "archlab.checkpoint"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # once imported, a plain attribute
        return value
    raise AttributeError(f"module 'archlab' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])
