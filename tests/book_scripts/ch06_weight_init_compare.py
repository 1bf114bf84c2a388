# Ch. 6.2.4: std 0.01 vs Xavier vs He on a five-layer ReLU net.
import numpy as np
from common.multi_layer_net import MultiLayerNet
from common.optimizer import SGD
from common.util import smooth_curve
from dataset.mnist import load_mnist

(x_train, t_train), _ = load_mnist(normalize=True)
train_size = x_train.shape[0]
batch_size = 128
max_iterations = 2000

weight_init_types = {"std=0.01": 0.01, "Xavier": "sigmoid", "He": "relu"}
optimizer = SGD(lr=0.01)
networks, train_loss = {}, {}
for key, weight_type in weight_init_types.items():
    networks[key] = MultiLayerNet(input_size=784, hidden_size_list=[100, 100, 100, 100], output_size=10,
                                  weight_init_std=weight_type)
    train_loss[key] = []

for _ in range(max_iterations):
    batch_mask = np.random.choice(train_size, batch_size)
    x_batch, t_batch = x_train[batch_mask], t_train[batch_mask]
    for key in weight_init_types:
        grads = networks[key].gradient(x_batch, t_batch)
        optimizer.update(networks[key].params, grads)
        train_loss[key].append(networks[key].loss(x_batch, t_batch))

smoothed = {key: smooth_curve(train_loss[key]) for key in weight_init_types}
for key in weight_init_types:
    print(key + ":" + str(smoothed[key][-1]))
