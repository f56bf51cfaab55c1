"""Vision domain (issue 5): the paper's image workloads and their ablations.

    mnist-mlp           LeNet-300-100 MLP, hidden [300p, 100p]        domains/vision/mnist.py
    cifar10-resnet18    ResNet-18 (CIFAR stem), base filters 4..256    domains/vision/cifar10.py
    cifar10-vit         6-layer ViT, patch 4, hidden 32..1024          domains/vision/cifar10.py
    imagenet-resnet50   ResNet-50, base filters 16..80                 domains/vision/imagenet.py
    cifar10-vgg11-linearized  centred VGG-11 x alpha, lazy regime (App. E)  vgg_linearized.py

Shared pieces (on-device data and augmentation, splits, label noise, sparsity masks) are in
``common.py``. Ablations are workload config fields, so they are recorded with every run:
``--label_noise=0.5``, ``--sparsity=0.9 --sparsity_method=snip``, ``--match_params_of=0.25``,
``--weight_decay=0``. Importing this package registers the workloads; torchvision is imported
inside functions only.
"""

from domains.vision import cifar10, imagenet, mnist, vgg_linearized  # noqa: F401  (register their workloads)
