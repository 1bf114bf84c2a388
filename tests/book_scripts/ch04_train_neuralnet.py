# Ch. 4-5: a two-layer net trained by hand-written SGD on one-hot labels.
import os
import sys

sys.path.append(os.pardir)  # the book's scripts carry this line; it may stay
import numpy as np
from dataset.mnist import load_mnist
from two_layer_net import TwoLayerNet

(x_train, t_train), (x_test, t_test) = load_mnist(normalize=True, one_hot_label=True)

iters_num = 3000
batch_size = 100
learning_rate = 0.1
train_size = x_train.shape[0]
iter_per_epoch = 600

network = TwoLayerNet(input_size=784, hidden_size=50, output_size=10)
train_loss_list, train_acc_list, test_acc_list = [], [], []

for i in range(iters_num):
    batch_mask = np.random.choice(train_size, batch_size)
    x_batch, t_batch = x_train[batch_mask], t_train[batch_mask]
    grad = network.gradient(x_batch, t_batch)
    for key in ("W1", "b1", "W2", "b2"):
        network.params[key] -= learning_rate * grad[key]
    train_loss_list.append(network.loss(x_batch, t_batch))
    if i % iter_per_epoch == 0 or i == iters_num - 1:
        train_acc = network.accuracy(x_train[:2000], t_train[:2000])
        test_acc = network.accuracy(x_test, t_test)
        train_acc_list.append(train_acc)
        test_acc_list.append(test_acc)
        print("train acc, test acc | " + str(train_acc) + ", " + str(test_acc))
