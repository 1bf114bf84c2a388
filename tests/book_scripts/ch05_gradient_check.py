# Ch. 5.7: backprop against central differences on three images.
import numpy as np
from dataset.mnist import load_mnist
from two_layer_net import TwoLayerNet

from xpnet import to_host  # np.abs works on NumPy and CuPy arrays directly; to_host on any library

(x_train, t_train), _ = load_mnist(normalize=True, one_hot_label=True)

hidden_size = 50
network = TwoLayerNet(input_size=784, hidden_size=hidden_size, output_size=10)
x_batch, t_batch = x_train[:3], t_train[:3]

grad_numerical = network.numerical_gradient(x_batch, t_batch)
grad_backprop = network.gradient(x_batch, t_batch)

diffs = {}
for key in grad_numerical:
    diffs[key] = float(np.average(np.abs(to_host(grad_backprop[key]) - to_host(grad_numerical[key]))))
    print(key + ":" + str(diffs[key]))
