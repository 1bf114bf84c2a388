"""xpnet: the book's layers, optimizers and nets, written once for NumPy and CuPy."""

from xpnet.backend import Device, device, to_device, to_host

__all__ = ["Device", "device", "to_device", "to_host"]
__version__ = "0.1.0"
