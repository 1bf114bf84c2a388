# Ch. 6.4.3: dropout against overfitting, trained by the book's Trainer.
from common.multi_layer_net_extend import MultiLayerNetExtend
from common.trainer import Trainer
from dataset.mnist import load_mnist

(x_train, t_train), (x_test, t_test) = load_mnist(normalize=True)
x_train, t_train = x_train[:300], t_train[:300]

use_dropout = True
dropout_ratio = 0.2
epochs = 301

network = MultiLayerNetExtend(input_size=784, hidden_size_list=[100, 100, 100, 100, 100, 100], output_size=10,
                              use_dropout=use_dropout, dropout_ration=dropout_ratio)
trainer = Trainer(network, x_train, t_train, x_test, t_test, epochs=epochs, mini_batch_size=100,
                  optimizer="sgd", optimizer_param={"lr": 0.01}, verbose=True)
trainer.train()
train_acc_list, test_acc_list = trainer.train_acc_list, trainer.test_acc_list
