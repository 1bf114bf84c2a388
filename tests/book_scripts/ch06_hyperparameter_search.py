# Ch. 6.5.3: random search over the learning rate and weight decay, judged on validation data.
import numpy as np
from common.multi_layer_net import MultiLayerNet
from common.trainer import Trainer
from common.util import shuffle_dataset
from dataset.mnist import load_mnist

(x_train, t_train), _ = load_mnist(normalize=True)
x_train, t_train = x_train[:500], t_train[:500]

validation_rate = 0.20
validation_num = int(x_train.shape[0] * validation_rate)
np.random.seed(1)
x_train, t_train = shuffle_dataset(x_train, t_train)
x_val, t_val = x_train[:validation_num], t_train[:validation_num]
x_train, t_train = x_train[validation_num:], t_train[validation_num:]

optimization_trial = 100
epochs = 50
lr_exponents = (-6, -2)  # the book's range, 10^-6 to 10^-2
trainers = []  # kept to check what each trial learned (the book keeps only the accuracy lists)


def __train(lr, weight_decay):
    network = MultiLayerNet(input_size=784, hidden_size_list=[100, 100, 100, 100, 100, 100], output_size=10,
                            weight_decay_lambda=weight_decay)
    trainer = Trainer(network, x_train, t_train, x_val, t_val, epochs=epochs, mini_batch_size=100,
                      optimizer="sgd", optimizer_param={"lr": lr}, verbose=False)
    trainer.train()
    trainers.append(trainer)
    return trainer.test_acc_list, trainer.train_acc_list


results_val = {}
for _ in range(optimization_trial):
    weight_decay = 10 ** np.random.uniform(-8, -4)
    lr = 10 ** np.random.uniform(*lr_exponents)
    val_acc_list, train_acc_list = __train(lr, weight_decay)
    print("val acc:" + str(val_acc_list[-1]) + " | lr:" + str(lr) + ", weight decay:" + str(weight_decay))
    results_val[(lr, weight_decay)] = val_acc_list

best = sorted(results_val.items(), key=lambda kv: kv[1][-1], reverse=True)
