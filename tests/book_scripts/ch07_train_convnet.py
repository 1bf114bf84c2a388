# Ch. 7.5: SimpleConvNet, its gradient check on a tiny input, training by the Trainer, saved parameters.
import numpy as np
from common.trainer import Trainer
from dataset.mnist import load_mnist
from simple_convnet import SimpleConvNet

from xpnet import to_host  # np.abs works on NumPy and CuPy arrays directly; to_host on any library

# the gradient check of ch07/gradient_check.py: one random 10x10 image, its label given as [[1]]
check_input_dim = (1, 10, 10)
check_hidden_size = 10
check_weight_init_std = 0.01
small = SimpleConvNet(input_dim=check_input_dim, conv_param={"filter_num": 10, "filter_size": 3, "pad": 0, "stride": 1},
                      hidden_size=check_hidden_size, output_size=10, weight_init_std=check_weight_init_std)
X = np.random.rand(*check_input_dim).reshape((1, *check_input_dim))
T = np.array([1]).reshape((1, 1))
grad_num = small.numerical_gradient(X, T)
grad = small.gradient(X, T)
grad_diff = {key: float(np.abs(to_host(grad_num[key]) - to_host(grad[key])).mean()) for key in grad_num}
for key in grad_diff:
    print(key, grad_diff[key])

(x_train, t_train), (x_test, t_test) = load_mnist(flatten=False)
train_num, test_num = 5000, 1000  # the book's "if it takes too long, use less data"
x_train, t_train = x_train[:train_num], t_train[:train_num]
x_test, t_test = x_test[:test_num], t_test[:test_num]

max_epochs = 20
network = SimpleConvNet(input_dim=(1, 28, 28), conv_param={"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1},
                        hidden_size=100, output_size=10, weight_init_std=0.01)
trainer = Trainer(network, x_train, t_train, x_test, t_test, epochs=max_epochs, mini_batch_size=100,
                  optimizer="Adam", optimizer_param={"lr": 0.001}, evaluate_sample_num_per_epoch=1000)
trainer.train()

network.save_params("params.pkl")  # npz content, whatever the name
print("Saved Network Parameters!")
restored = SimpleConvNet()
restored.load_params("params.pkl")
restored_acc = restored.accuracy(x_test, t_test)
