# Ch. 6.4.2: 300 training images, a seven-layer net, and weight decay against overfitting.
import numpy as np
from common.multi_layer_net import MultiLayerNet
from common.optimizer import SGD
from dataset.mnist import load_mnist

(x_train, t_train), (x_test, t_test) = load_mnist(normalize=True)
x_train, t_train = x_train[:300], t_train[:300]

weight_decay_lambda = 0.1
max_epochs = 201
batch_size = 100

network = MultiLayerNet(input_size=784, hidden_size_list=[100, 100, 100, 100, 100, 100], output_size=10,
                        weight_decay_lambda=weight_decay_lambda)
optimizer = SGD(lr=0.01)
train_size = x_train.shape[0]
iter_per_epoch = max(train_size / batch_size, 1)
train_acc_list, test_acc_list = [], []
epoch_cnt = 0

for i in range(1000000000):
    batch_mask = np.random.choice(train_size, batch_size)
    grads = network.gradient(x_train[batch_mask], t_train[batch_mask])
    optimizer.update(network.params, grads)
    if i % iter_per_epoch == 0:
        train_acc_list.append(network.accuracy(x_train, t_train))
        test_acc_list.append(network.accuracy(x_test, t_test))
        print("epoch:" + str(epoch_cnt) + ", train acc:" + str(train_acc_list[-1])
              + ", test acc:" + str(test_acc_list[-1]))
        epoch_cnt += 1
        if epoch_cnt >= max_epochs:
            break
