# Ch. 8.1: the test images the deep net gets wrong, drawn with matplotlib. On a GPU the book's NumPy calls on
# device arrays (np.argmax, np.sum) run through CuPy, but two things need host arrays: np.array of a list of
# CuPy arrays, and imshow. The lines marked "host:" are the ones to add; xpnet.to_host is a no-op on the CPU.
import matplotlib.pyplot as plt
import numpy as np
from dataset.mnist import load_mnist
from deep_convnet import DeepConvNet

import xpnet

(x_train, t_train), (x_test, t_test) = load_mnist(flatten=False)
sampled = 10000
x_test, t_test = x_test[:sampled], t_test[:sampled]

network = DeepConvNet()
network.load_params("deep_convnet_params.pkl")

batch_size = 100
classified_ids = []
acc = 0.0
for i in range(x_test.shape[0] // batch_size):
    tx = x_test[i * batch_size:(i + 1) * batch_size]
    tt = t_test[i * batch_size:(i + 1) * batch_size]
    y = np.argmax(network.predict(tx, train_flg=False), axis=1)
    acc += float(np.sum(y == tt))
    classified_ids.append(xpnet.to_host(y))  # host: np.array() below refuses a list of CuPy arrays
acc = acc / x_test.shape[0]
print("test accuracy:" + str(acc))

classified_ids = np.array(classified_ids).flatten()
x_shown, t_shown = xpnet.to_host(x_test), xpnet.to_host(t_test)  # host: for imshow and the comparison

fig = plt.figure()
fig.subplots_adjust(left=0, right=1, bottom=0, top=1, hspace=0.2, wspace=0.2)
mis_pairs = {}
for i, right in enumerate(classified_ids == t_shown[:classified_ids.size]):
    if not right:
        ax = fig.add_subplot(4, 5, len(mis_pairs) + 1, xticks=[], yticks=[])
        ax.imshow(x_shown[i].reshape(28, 28), cmap=plt.cm.gray_r, interpolation="nearest")
        mis_pairs[len(mis_pairs) + 1] = (int(t_shown[i]), int(classified_ids[i]))
        if len(mis_pairs) == 20:
            break
print(mis_pairs)
fig.savefig("misclassified.png")
