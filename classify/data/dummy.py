"""``--dummy``: synthetic uint8 images, no files. Class-balanced labels (index % classes).

Each image is a deterministic function of its index, with a faint class-dependent
brightness so that the task is learnable (loss goes down) while costing nothing to make.
"""

import torch
from torch.utils.data import Dataset

__all__ = ["DummyImages"]


class DummyImages(Dataset):
    def __init__(self, size: int, num_classes: int, image_size: int):
        self.size, self.num_classes, self.image_size = size, num_classes, image_size
        self.classes = [f"class_{i}" for i in range(num_classes)]

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int):
        target = index % self.num_classes
        g = torch.Generator().manual_seed(index)
        image = torch.randint(0, 128, (3, self.image_size, self.image_size), dtype=torch.uint8, generator=g)
        image += int(127 * target / max(1, self.num_classes - 1))  # class signal
        return image, target
