# Ch. 6.1.7: SGD, Momentum, AdaGrad and Adam on the same five-layer net and the same batches.
# ruff: noqa: F403, F405
import matplotlib.pyplot as plt
from common.multi_layer_net import MultiLayerNet
from common.optimizer import *  # brings np along, as the book's module does
from common.util import smooth_curve
from dataset.mnist import load_mnist

(x_train, t_train), _ = load_mnist(normalize=True)
train_size = x_train.shape[0]
batch_size = 128
max_iterations = 2000

optimizers = {"SGD": SGD(), "Momentum": Momentum(), "AdaGrad": AdaGrad(), "Adam": Adam()}
networks, train_loss = {}, {}
np.random.seed(0)
for key in optimizers:
    networks[key] = MultiLayerNet(input_size=784, hidden_size_list=[100, 100, 100, 100], output_size=10)
    train_loss[key] = []

for i in range(max_iterations):
    batch_mask = np.random.choice(train_size, batch_size)
    x_batch, t_batch = x_train[batch_mask], t_train[batch_mask]
    for key in optimizers:
        grads = networks[key].gradient(x_batch, t_batch)
        optimizers[key].update(networks[key].params, grads)
        train_loss[key].append(networks[key].loss(x_batch, t_batch))
    if i % 100 == 0:
        print("===========" + "iteration:" + str(i) + "===========")
        for key in optimizers:
            print(key + ":" + str(train_loss[key][-1]))

x = np.arange(max_iterations)
for key in optimizers:
    plt.plot(x, smooth_curve(train_loss[key]), label=key)
plt.legend()
plt.close("all")
