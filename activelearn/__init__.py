"""activelearn: label product images with a Fashion-MNIST model in the loop."""

__version__ = "0.1.0"

#: The ten Fashion-MNIST classes, in label-index order.
FMNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
