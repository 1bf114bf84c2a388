#!/usr/bin/env python
"""xpnet-train's bare job written as a PyTorch user would: the other side of ``bench.py --e2e``.

Same job as ``python scripts/train.py`` with no flags: MNIST, MLP 784-256-128-10 with ReLU and He
initialisation (zero biases), Adam lr 0.001, batch 100, shuffled every epoch, 10 epochs; after each
epoch the accuracy on the whole training set and on the test set (batches of 1000), a metrics.csv row
and a checkpoint; at the end curves.png (loss per step, accuracy per epoch) and summary.json.

The data is read the way torchvision's ``datasets.MNIST`` does it: the .gz files are decompressed once
into a cache folder, later runs read the raw IDX files. ``--loader dataloader`` (default) feeds batches
through ``DataLoader(TensorDataset(...), shuffle=True)`` as the tutorials do; ``--loader slicing`` takes
them by slicing the tensors with one ``randperm`` per epoch, as a user who timed the first would.

    python scripts/torch_twin.py --data-dir ~/data/mnist --out runs-torch/1
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

FILES = {"x_train": "train-images-idx3-ubyte", "t_train": "train-labels-idx1-ubyte",
         "x_test": "t10k-images-idx3-ubyte", "t_test": "t10k-labels-idx1-ubyte"}


def read_idx(path: Path, offset: int) -> np.ndarray:
    return np.fromfile(path, dtype=np.uint8, offset=offset)


def load_mnist(data_dir: Path, cache: Path) -> dict[str, torch.Tensor]:
    cache.mkdir(parents=True, exist_ok=True)
    out = {}
    for key, name in FILES.items():
        raw = cache / name
        if not raw.exists():
            with gzip.open(data_dir / f"{name}.gz", "rb") as src, open(raw, "wb") as dst:
                shutil.copyfileobj(src, dst)
        if key.startswith("x"):
            x = read_idx(raw, 16).reshape(-1, 784)
            out[key] = torch.from_numpy(x).float() / 255.0
        else:
            out[key] = torch.from_numpy(read_idx(raw, 8).astype(np.int64))
    return out


def make_model() -> nn.Module:
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    for m in model:
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")  # std sqrt(2 / fan_in), as xpnet's "he"
            nn.init.zeros_(m.bias)
    return model


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, t: torch.Tensor, batch: int = 1000) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        correct += (model(x[i:i + batch]).argmax(1) == t[i:i + batch]).sum().item()
    model.train()
    return correct / len(x)


def batches(x: torch.Tensor, t: torch.Tensor, size: int, loader: str):  # noqa: ANN201
    if loader == "dataloader":
        return DataLoader(TensorDataset(x, t), batch_size=size, shuffle=True)
    perm = torch.randperm(len(x))
    return ((x[perm[i:i + size]], t[perm[i:i + size]]) for i in range(0, len(x), size))


def plot(path: Path, losses: list[float], history: list[dict[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.plot(losses, alpha=0.3)
    ax1.set_yscale("log")
    ax1.set_xlabel("step")
    ax1.set_ylabel("training loss")
    epochs = [h["epoch"] for h in history]
    ax2.plot(epochs, [h["train_acc"] for h in history], "o-", label="train")
    ax2.plot(epochs, [h["test_acc"] for h in history], "s--", label="test")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("XPNET_DATA_DIR", ".")) / "mnist")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "torch-twin-mnist")
    p.add_argument("--out", type=Path, default=Path("runs-torch") / time.strftime("%Y%m%d-%H%M%S"))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--loader", choices=("dataloader", "slicing"), default="dataloader")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit-train", type=int, default=None, help="train on the first N images (quick runs)")
    args = p.parse_args()

    torch.manual_seed(args.seed)
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    d = load_mnist(args.data_dir, args.cache)
    d["x_train"], d["t_train"] = d["x_train"][:args.limit_train], d["t_train"][:args.limit_train]
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    losses: list[float] = []
    history: list[dict[str, float]] = []
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        epoch_losses = []
        for x, t in batches(d["x_train"], d["t_train"], 100, args.loader):
            opt.zero_grad()
            loss = loss_fn(model(x), t)
            loss.backward()
            opt.step()
            epoch_losses.append(loss.item())
        train_seconds = time.perf_counter() - t0
        losses += epoch_losses
        rec = {"epoch": epoch, "train_loss": sum(epoch_losses) / len(epoch_losses),
               "train_acc": accuracy(model, d["x_train"], d["t_train"]),
               "test_acc": accuracy(model, d["x_test"], d["t_test"]), "train_seconds": train_seconds}
        history.append(rec)
        with open(args.out / "metrics.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rec))
            w.writeheader()
            w.writerows(history)
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch},
                   args.out / "checkpoint.pt")
        print(f"epoch {epoch}/{args.epochs} loss {rec['train_loss']:.4f} train {rec['train_acc']:.4f} "
              f"test {rec['test_acc']:.4f}", flush=True)
    plot(args.out / "curves.png", losses, history)
    summary = {"status": "completed", "history": history, "seconds": time.perf_counter() - started,
               "torch": torch.__version__, "threads": torch.get_num_threads(), "loader": args.loader}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
