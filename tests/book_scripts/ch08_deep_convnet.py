# Ch. 8.1: the deep net, a few steps of Adam through the Trainer, then its parameters saved and reloaded.
from common.trainer import Trainer
from dataset.mnist import load_mnist
from deep_convnet import DeepConvNet

(x_train, t_train), (x_test, t_test) = load_mnist(flatten=False)
x_train, t_train = x_train[:1000], t_train[:1000]
x_test, t_test = x_test[:200], t_test[:200]

epochs = 20
network = DeepConvNet()
trainer = Trainer(network, x_train, t_train, x_test, t_test, epochs=epochs, mini_batch_size=100,
                  optimizer="Adam", optimizer_param={"lr": 0.001}, evaluate_sample_num_per_epoch=200, verbose=False)
trainer.train()
network.save_params("deep_convnet_params.pkl")
again = DeepConvNet()
again.load_params("deep_convnet_params.pkl")
same_acc = again.accuracy(x_test, t_test) == network.accuracy(x_test, t_test)
