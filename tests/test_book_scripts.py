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
from xpnet import to_host
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
    # Two trials drawn from the top of the book's range, where 12 epochs on 400 images are enough to learn.
    g = run("ch06_hyperparameter_search.py", optimization_trial=2, epochs=12, lr_exponents=(-2.2, -2))
    assert on_device(g["x_val"], book) and g["x_val"].shape[0] == 100 and g["x_train"].shape[0] == 400
    assert len(g["results_val"]) == 2 and len(g["trainers"]) == 2
    for (lr, _), val_acc_list in g["results_val"].items():
        assert len(val_acc_list) == 12 and floats(val_acc_list) and 10 ** -2.2 <= lr <= 10 ** -2
    (best_lr, _), best_val = g["best"][0]
    assert best_val[-1] == max(v[-1] for v in g["results_val"].values())
    assert best_val[-1] > 0.25 and best_val[-1] > best_val[0] + 0.1, best_val  # chance is 0.1
    for trainer in g["trainers"]:  # each trial learned: its loss fell
        losses = trainer.train_loss_list
        assert np.mean(losses[-8:]) < np.mean(losses[:8]) - 0.15, (trainer.optimizer.lr, losses)  # flat: ±0.05


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


def test_ch08_deep_convnet_learns_and_reloads(book: Device) -> None:
    xpnet.book.use(book, dtype="float32")
    g = run("ch08_deep_convnet.py", epochs=2)
    trainer, network, again = g["trainer"], g["network"], g["again"]
    losses = trainer.train_loss_list
    assert len(losses) == 20 and floats(losses)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.1, losses  # Adam moves it in 20 steps
    assert trainer.test_acc_list[-1] > 0.15, trainer.test_acc_list  # chance is 0.1
    assert zipfile.is_zipfile("deep_convnet_params.pkl") and g["same_acc"] is True
    saved, loaded = network.state_dict(), again.state_dict()
    assert saved.keys() == loaded.keys() and {"W1", "b8"} <= saved.keys()
    for key, value in saved.items():
        np.testing.assert_array_equal(loaded[key], value, err_msg=key)
    np.testing.assert_array_equal(to_host(again.predict(g["x_test"])), to_host(network.predict(g["x_test"])))


def _no_numpy_on_strict(book: Device) -> None:
    if book.backend == "array_api_strict":
        pytest.skip("array_api_strict refuses NumPy functions on its arrays, which CuPy runs (np.argmax(y))")


def test_ch07_filters_are_drawn_with_the_marked_to_host_line(book: Device) -> None:
    """matplotlib needs host arrays: the script's one marked ``xpnet.to_host`` line is all a GPU needs."""
    _no_numpy_on_strict(book)
    g = run("ch07_visualize_filter.py")
    assert on_device(g["network"].params["W1"], book)
    assert len(g["after"].axes) == 30 and Path("filters.png").stat().st_size > 0
    drawn = np.stack([ax.images[0].get_array() for ax in g["after"].axes])
    np.testing.assert_array_equal(drawn, xpnet.to_host(g["network"].params["W1"])[:, 0])


def test_ch08_misclassified_images_are_listed_and_drawn(book: Device) -> None:
    """The book's misclassified-MNIST walk, with the two marked ``xpnet.to_host`` lines it needs on a GPU."""
    _no_numpy_on_strict(book)
    xpnet.book.use(book, dtype="float32")
    from xpnet.book.deep_convnet import DeepConvNet

    DeepConvNet().save_params("deep_convnet_params.pkl")  # untrained: plenty of mistakes to list
    g = run("ch08_misclassified_mnist.py", sampled=200)
    assert type(g["acc"]) is float and 0.0 <= g["acc"] <= 1.0
    assert g["classified_ids"].shape == (200,) and isinstance(g["classified_ids"], np.ndarray)
    wrong = int(np.sum(g["classified_ids"] != g["t_shown"][:200]))
    assert abs(g["acc"] - (200 - wrong) / 200) < 1e-12
    pairs = g["mis_pairs"]
    assert len(pairs) == min(20, wrong) and all(label != guess for label, guess in pairs.values())
    assert Path("misclassified.png").stat().st_size > 0
