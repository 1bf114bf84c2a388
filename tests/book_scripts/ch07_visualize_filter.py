# Ch. 7.6: the first layer's filters as pictures, before and after a save/load round trip. On a GPU the
# weights live on the device; imshow needs host arrays: the line marked "host:" is the one to add.
import matplotlib.pyplot as plt
import numpy as np
from simple_convnet import SimpleConvNet

import xpnet


def filter_show(filters, nx=8):
    FN, C, FH, FW = filters.shape
    ny = int(np.ceil(FN / nx))
    fig = plt.figure()
    fig.subplots_adjust(left=0, right=1, bottom=0, top=1, hspace=0.05, wspace=0.05)
    for i in range(FN):
        ax = fig.add_subplot(ny, nx, i + 1, xticks=[], yticks=[])
        ax.imshow(filters[i, 0], cmap=plt.cm.gray_r, interpolation="nearest")
    return fig


network = SimpleConvNet()
before = filter_show(xpnet.to_host(network.params["W1"]))  # host: imshow of device weights is refused
network.save_params("params.pkl")
network.load_params("params.pkl")
after = filter_show(xpnet.to_host(network.params["W1"]))  # host: as above
after.savefig("filters.png")
