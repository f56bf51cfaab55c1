"""Vision domain (issue 5): MNIST MLP, CIFAR-10 ResNet-18 and ViT, ImageNet ResNet-50.

Importing this package registers its workloads; torchvision is imported inside functions only.
"""

from domains.vision import cifar10, imagenet, mnist  # noqa: F401  (register their workloads)
