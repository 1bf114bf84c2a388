"""Book-style scripts (ours, in ``tests/book_scripts``) run through ``xpnet.book`` on every backend.

Each script imports the book's way; the test applies the README's one find-and-replace, shortens
the loops by rewriting constants at the top of the script (nothing else), runs it with the facade
on the matrix device, and checks what it computed: that it learned, and that what the book prints
or plots came back as Python floats.
"""

from __future__ import annotations

import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xpnet.book
from xpnet.backend import Device
from xpnet.data import SampleDataWarning

SCRIPTS = Path(__file__).parent / "book_scripts"

# The README's find-and-replace ("Coming from the book"), exactly.
REPLACE = [
    (r"^from common\.", "from xpnet.book."),
    (r"^from dataset\.mnist ", "from xpnet.book.mnist "),
    (r"^from (two_layer_net|simple_convnet|deep_convnet) ", r"from xpnet.book.\1 "),
]


def port(source: str) -> str:
    for pattern, repl in REPLACE:
        source = re.sub(pattern, repl, source, flags=re.MULTILINE)
    return source


def shorten(source: str, constants: dict[str, Any]) -> str:
    """Rewrite ``name = ...`` lines at the top level: the only edit besides the imports."""
    for name, value in constants.items():
        source, n = re.subn(rf"^{name} = .*$", f"{name} = {value!r}", source, flags=re.MULTILINE)
        assert n == 1, f"constant {name} not found once in the script"
    return source


def run(name: str, **constants: Any) -> dict[str, Any]:
    path = SCRIPTS / name
    source = shorten(port(path.read_text()), constants)
    assert "from common." not in source and "from dataset." not in source
    namespace: dict[str, Any] = {"__name__": "__main__", "__file__": str(path)}
    np.random.seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SampleDataWarning)  # no MNIST here: the bundled sample, said loudly
        warnings.filterwarnings("ignore", message=".*non-interactive.*")
        exec(compile(source, str(path), "exec"), namespace)
    return namespace


def floats(values: list[Any]) -> bool:
    return all(type(v) is float for v in values)


def on_device(a: Any, dev: Device) -> bool:
    return isinstance(a, np.ndarray) if dev.is_host else (not isinstance(a, np.ndarray) and a.device == dev.native)


def test_port_is_the_readme_replacement() -> None:
    src = ("from common.layers import *\nfrom dataset.mnist import load_mnist\nfrom two_layer_net import TwoLayerNet\n"
           "from simple_convnet import SimpleConvNet\nfrom deep_convnet import DeepConvNet\nimport common_sense\n")
    assert port(src) == ("from xpnet.book.layers import *\nfrom xpnet.book.mnist import load_mnist\n"
                         "from xpnet.book.two_layer_net import TwoLayerNet\n"
                         "from xpnet.book.simple_convnet import SimpleConvNet\n"
                         "from xpnet.book.deep_convnet import DeepConvNet\nimport common_sense\n")
    readme = (Path(__file__).parents[1] / "docs" / "book.md").read_text()  # the README's book page
    for needle in ("`from common.` → `from xpnet.book.`", "`from dataset.mnist` → `from xpnet.book.mnist`"):
        assert needle in readme


def test_ch04_two_layer_net_learns_with_sgd_by_hand(book: Device) -> None:
    g = run("ch04_train_neuralnet.py", iters_num=300, iter_per_epoch=100)
    assert on_device(g["x_batch"], book)
    assert len(g["train_loss_list"]) == 300 and floats(g["train_loss_list"])
    assert floats(g["test_acc_list"]) and len(g["test_acc_list"]) == 4
    assert g["test_acc_list"][0] < 0.5 < 0.8 < g["test_acc_list"][-1], g["test_acc_list"]
    assert np.mean(g["train_loss_list"][-50:]) < 0.5 * np.mean(g["train_loss_list"][:10])


def test_ch05_backprop_matches_numerical_gradient(book: Device) -> None:
    g = run("ch05_gradient_check.py", hidden_size=3)
    assert set(g["diffs"]) == {"W1", "b1", "W2", "b2"}
    assert all(d < 1e-8 for d in g["diffs"].values()), g["diffs"]  # float64 nets, as in the book


def test_ch06_optimizer_comparison(book: Device) -> None:
    g = run("ch06_optimizer_compare.py", max_iterations=150)
    last = {k: float(np.mean(v[-30:])) for k, v in g["train_loss"].items()}
    assert all(floats(v) and len(v) == 150 for v in g["train_loss"].values())
    assert all(last[k] < last["SGD"] for k in ("Momentum", "AdaGrad", "Adam")), last  # fig. 6-9's finding


def test_ch06_weight_init_comparison(book: Device) -> None:
    g = run("ch06_weight_init_compare.py", max_iterations=150)
    s = {k: float(v[-1]) for k, v in g["smoothed"].items()}
    assert s["std=0.01"] > 2.2, s  # the signal dies away in five layers: no learning
    assert s["He"] < s["Xavier"] < s["std=0.01"] and s["He"] < 1.5, s


def test_ch06_batch_norm_learns_where_the_plain_net_does_not(book: Device) -> None:
    g = run("ch06_batch_norm.py", max_epochs=6, weight_init_std=0.01)
    assert floats(g["train_acc_list"] + g["bn_train_acc_list"]) and len(g["bn_train_acc_list"]) == 6
    assert g["train_acc_list"][-1] < 0.2, g["train_acc_list"]
    assert g["bn_train_acc_list"][-1] > 0.4, g["bn_train_acc_list"]


def test_ch06_overfitting_with_weight_decay(book: Device) -> None:
    g = run("ch06_overfit_weight_decay.py", max_epochs=31)
    train, test = g["train_acc_list"], g["test_acc_list"]
    assert len(train) == 31 and floats(train + test)
    assert train[-1] > train[0] + 0.2 and train[-1] > test[-1], (train[-1], test[-1])


def test_ch06_overfitting_with_dropout_through_the_trainer(book: Device, capsys: pytest.CaptureFixture[str]) -> None:
    g = run("ch06_overfit_dropout.py", epochs=21)
    trainer = g["trainer"]
    assert len(g["train_acc_list"]) == len(g["test_acc_list"]) == 21
    assert len(trainer.train_loss_list) == 21 * 3 and floats(trainer.train_loss_list + g["train_acc_list"])
    assert g["train_acc_list"][-1] > g["train_acc_list"][0] + 0.1, g["train_acc_list"]
    out = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("train loss:") for line in out) == 63
    epoch_lines = [line for line in out if line.startswith("=== epoch:")]
    assert len(epoch_lines) == 21
    assert re.fullmatch(r"=== epoch:21, train acc:[0-9.]+, test acc:[0-9.]+ ===", epoch_lines[-1])
    assert out[-2:] == ["=============== Final Test Accuracy ===============", f"test acc:{trainer.final_test_acc}"]


def test_ch06_hyperparameter_random_search(book: Device) -> None:
    g = run("ch06_hyperparameter_search.py", optimization_trial=3, epochs=8)
    assert on_device(g["x_val"], book) and g["x_val"].shape[0] == 100 and g["x_train"].shape[0] == 400
    assert len(g["results_val"]) == 3
    for val_acc_list in g["results_val"].values():
        assert len(val_acc_list) == 8 and floats(val_acc_list) and all(0.0 <= a <= 1.0 for a in val_acc_list)


def test_ch07_simple_convnet(book: Device) -> None:
    # A smaller net for the gradient check, with weights large enough that no ReLU input sits within
    # h = 1e-4 of its kink (there the central difference is off by design, on any library).
    g = run("ch07_train_convnet.py", max_epochs=1, check_input_dim=(1, 6, 6), check_hidden_size=4,
            check_weight_init_std=0.1, **{"train_num, test_num": (2000, 500)})
    assert all(d < 1e-5 for d in g["grad_diff"].values()), g["grad_diff"]
    trainer = g["trainer"]
    assert len(trainer.test_acc_list) == 1 and trainer.test_acc_list[-1] > 0.4, trainer.test_acc_list
    assert zipfile.is_zipfile("params.pkl")  # npz content under the book's file name
    assert g["restored_acc"] == g["network"].accuracy(g["x_test"], g["t_test"])


def test_ch08_deep_convnet_steps_and_reloads(book: Device) -> None:
    xpnet.book.use(book, dtype="float32")
    g = run("ch08_deep_convnet.py", epochs=1)
    assert len(g["trainer"].train_loss_list) == 10 and floats(g["trainer"].train_loss_list)
    assert zipfile.is_zipfile("deep_convnet_params.pkl") and g["same_acc"] is True
