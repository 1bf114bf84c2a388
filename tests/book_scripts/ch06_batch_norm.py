# Ch. 6.3.2: the same net with and without batch norm, from a too-small initial scale.
import numpy as np
from common.multi_layer_net_extend import MultiLayerNetExtend
from common.optimizer import SGD
from dataset.mnist import load_mnist

(x_train, t_train), _ = load_mnist(normalize=True)
x_train, t_train = x_train[:1000], t_train[:1000]

max_epochs = 20
train_size = x_train.shape[0]
batch_size = 100
learning_rate = 0.01
weight_init_std = 0.05

bn_network = MultiLayerNetExtend(input_size=784, hidden_size_list=[100, 100, 100, 100, 100], output_size=10,
                                 weight_init_std=weight_init_std, use_batchnorm=True)
network = MultiLayerNetExtend(input_size=784, hidden_size_list=[100, 100, 100, 100, 100], output_size=10,
                              weight_init_std=weight_init_std)
optimizer = SGD(lr=learning_rate)
train_acc_list, bn_train_acc_list = [], []
iter_per_epoch = max(train_size / batch_size, 1)
epoch_cnt = 0

for i in range(1000000000):
    batch_mask = np.random.choice(train_size, batch_size)
    x_batch, t_batch = x_train[batch_mask], t_train[batch_mask]
    for _network in (bn_network, network):
        grads = _network.gradient(x_batch, t_batch)
        optimizer.update(_network.params, grads)
    if i % iter_per_epoch == 0:
        train_acc_list.append(network.accuracy(x_train, t_train))
        bn_train_acc_list.append(bn_network.accuracy(x_train, t_train))
        print("epoch:" + str(epoch_cnt) + " | " + str(train_acc_list[-1]) + " - " + str(bn_train_acc_list[-1]))
        epoch_cnt += 1
        if epoch_cnt >= max_epochs:
            break
