"""Datasets and mini-batches: everything the trainer needs to get MNIST onto a device.

- :func:`load_mnist` is the book's entry point (host NumPy arrays);
- :func:`load_dataset` returns a :class:`Dataset` that records where the data came from;
- :func:`open_dataset` does the same for any ``--dataset``: a name (mnist, fashion-mnist,
  cifar10), an image folder or an .npz (:mod:`xpnet.data.catalog`);
- :class:`DataLoader` yields seeded, resumable batches already on a device;
- :class:`Augment` shifts, crops and flips training batches on the device (``DataLoader(augment=...)``);
- :func:`read_idx` / :func:`write_idx` handle the IDX files, raising :class:`DataError`.
"""

from xpnet.data.augment import Augment
from xpnet.data.catalog import open_dataset
from xpnet.data.datasets import Dataset, SampleDataWarning, load_dataset, load_mnist
from xpnet.data.idx import DataError, read_idx, write_idx
from xpnet.data.loader import DataLoader, shuffle_dataset, validation_split
from xpnet.data.sources import DownloadError, cache_root

__all__ = [
    "Augment",
    "DataError",
    "DataLoader",
    "Dataset",
    "DownloadError",
    "SampleDataWarning",
    "cache_root",
    "load_dataset",
    "load_mnist",
    "open_dataset",
    "read_idx",
    "shuffle_dataset",
    "validation_split",
    "write_idx",
]
