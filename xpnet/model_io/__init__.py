"""Use a trained model: load it, evaluate it, classify your own images, export it (ONNX, npz).

- :func:`load` / :func:`load_model`: a run folder or checkpoint → the book's net on a device;
- :mod:`~xpnet.model_io.evaluate`: accuracy, per-class accuracy, confusion matrix, mistakes;
- :mod:`~xpnet.model_io.preprocess`: pictures → 28×28 inputs as MNIST / Fashion-MNIST made theirs;
- :mod:`~xpnet.model_io.export_onnx`, :mod:`~xpnet.model_io.export_npz`: the model outside xpnet.
"""

from xpnet.model_io.load import LoadedModel, ModelError, find_checkpoint, load, load_model

__all__ = ["LoadedModel", "ModelError", "find_checkpoint", "load", "load_model"]
