"""Your own arrays as a dataset: an ``.npz`` with ``x_train``, ``y_train`` and optionally
``x_test``, ``y_test``, ``class_names`` (the names Keras' ``load_data`` gives them).

``x`` is (N, D) vectors (for MLPs), (N, H, W) grey images or (N, C, H, W) images; uint8 are
grey levels (÷255 at batch time, on the device) and floats are used as they are. Labels are
integer class indices 0..K−1, K being ``len(class_names)`` or the largest label + 1. Without
a test set a seeded, stratified ``test_split`` of every class is held out. Read with
``allow_pickle=False``: an .npz holding Python objects is refused, never unpickled.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from xpnet.data.idx import DataError
from xpnet.data.split import stratified_split

KEYS = ("x_train", "y_train", "x_test", "y_test", "class_names")


def _images(x: np.ndarray, key: str, path: Path) -> np.ndarray:
    """``x`` as uint8 grey levels or float32 values, in one of the accepted layouts."""
    if x.ndim not in (2, 3, 4) or x.shape[0] == 0 or 0 in x.shape:
        raise DataError(f"{path}: {key} has shape {x.shape}; expected (N, D), (N, H, W) or (N, C, H, W) "
                        f"with N >= 1", path)
    if x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        raise DataError(f"{path}: {key} has shape {x.shape}, which looks channels-last (N, H, W, C); xpnet "
                        f"takes (N, C, H, W): save np.transpose({key}, (0, 3, 1, 2))", path)
    if x.dtype == np.uint8:
        return x
    if x.dtype.kind in "iu":
        if int(x.min()) < 0 or int(x.max()) > 255:
            raise DataError(f"{path}: {key} holds integers {int(x.min())}..{int(x.max())}; integer images "
                            f"must be grey levels 0..255 (or give floats)", path)
        return x.astype(np.uint8)
    if x.dtype.kind == "f":
        if not np.isfinite(x).all():
            raise DataError(f"{path}: {key} holds NaN or inf values", path)
        return x.astype(np.float32)
    raise DataError(f"{path}: {key} has dtype {x.dtype}; expected uint8 grey levels or floats", path)


def _labels(y: np.ndarray, key: str, path: Path, n: int, xkey: str) -> np.ndarray:
    if y.dtype.kind not in "iu" or y.ndim != 1:
        raise DataError(f"{path}: {key} is {y.dtype} {y.shape}; labels must be integer class indices (N,)", path)
    if y.shape[0] != n:
        raise DataError(f"{path}: {xkey} holds {n} samples but {key} holds {y.shape[0]} labels; the "
                        f"lengths must match", path)
    if y.size and int(y.min()) < 0:
        raise DataError(f"{path}: {key} holds label {int(y.min())}; labels are class indices 0..K-1", path)
    return y


def load_npz(path: Path | str, test_split: float = 0.2) -> dict[str, np.ndarray]:
    """The arrays of an .npz dataset, checked: x/t train and test, and the class names."""
    path = Path(path).resolve()
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise DataError(f"{path}: a single array, not an .npz of x_train, y_train, ...", path)
            have = set(z.files)
            missing = [k for k in ("x_train", "y_train") if k not in have]
            if missing:
                raise DataError(f"{path}: no {' or '.join(repr(k) for k in missing)} array (an .npz dataset "
                                f"needs x_train and y_train; it holds {', '.join(sorted(have)) or 'nothing'})",
                                path)
            if ("x_test" in have) != ("y_test" in have):
                raise DataError(f"{path}: has {'x_test' if 'x_test' in have else 'y_test'} without "
                                f"{'y_test' if 'x_test' in have else 'x_test'}; give both or neither", path)
            raw = {k: z[k] for k in KEYS if k in have}
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: no such file", path) from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz ({str(exc).strip().splitlines()[0] if str(exc) else exc!r})",
                        path) from None
    x = _images(raw["x_train"], "x_train", path)
    t = _labels(raw["y_train"], "y_train", path, x.shape[0], "x_train")
    if "x_test" in raw:
        xt = _images(raw["x_test"], "x_test", path)
        tt = _labels(raw["y_test"], "y_test", path, xt.shape[0], "x_test")
        if xt.shape[1:] != x.shape[1:]:
            raise DataError(f"{path}: x_test samples are {xt.shape[1:]} but x_train samples {x.shape[1:]}", path)
        if xt.dtype != x.dtype:
            raise DataError(f"{path}: x_test is {raw['x_test'].dtype} but x_train {raw['x_train'].dtype}; give "
                            f"both as grey levels 0..255 or both as floats", path)
    else:
        tr, te = stratified_split(t, test_split)
        x, t, xt, tt = x[tr], t[tr], x[te], t[te]
    k = int(t.max()) + 1
    if "class_names" in raw:
        names = [str(s) for s in np.asarray(raw["class_names"]).reshape(-1)]
        if raw["class_names"].dtype.kind not in "US" or len(names) < k:
            raise DataError(f"{path}: class_names must be {k} or more strings (one per label 0..{k - 1}), got "
                            f"{raw['class_names'].dtype} {raw['class_names'].shape}", path)
        k = len(names)
    else:
        names = [str(i) for i in range(k)]
    if k < 2:
        raise DataError(f"{path}: y_train holds one class only; a classifier needs at least two", path)
    lacking = sorted(set(np.unique(tt).tolist()) - set(np.unique(t).tolist()))
    if lacking:
        raise DataError(f"{path}: the test set has class {lacking[0]}, which the training set lacks", path)
    dtype = np.uint8 if k <= 256 else np.int32
    return {"x_train": x, "t_train": t.astype(dtype), "x_test": xt, "t_test": tt.astype(dtype),
            "classes": np.array(names)}
