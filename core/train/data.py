"""Training photos held in memory as uint8, and seeded random HR crops from them."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.degradations import realesrgan_degrade

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
BSDS500 = SHARED_DATA / "train" / "bsds500"
KODAK24 = SHARED_DATA / "val" / "kodak24"
# Debian photo packages (apt-get install lomiri-wallpapers-16.04 mate-backgrounds): multi-megapixel
# JPEGs, downscaled x2 before cropping to remove JPEG and demosaicing traces.
WALLPAPER_DIRS = [Path("/usr/share/backgrounds"), Path("/usr/share/backgrounds/mate/nature")]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


def _image_files(folder: Path, recursive: bool) -> list[Path]:
    if not folder.is_dir():
        return []
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def load_rgb(path: Path, downscale: int = 1) -> np.ndarray:
    with Image.open(path) as file:
        img = file.convert("RGB")
        if downscale > 1:
            img = img.resize((img.width // downscale, img.height // downscale), Image.Resampling.BICUBIC)
        return np.asarray(img, dtype=np.uint8).copy()


def default_training_files() -> list[tuple[Path, int]]:
    """(path, downscale) for BSDS500 train+test and the installed wallpaper photos."""
    files = [(p, 1) for p in _image_files(BSDS500, recursive=True)]
    for folder in WALLPAPER_DIRS:
        files += [(p, 2) for p in _image_files(folder, recursive=False)]
    return files


class PhotoPool:
    """Photos as uint8 H x W x 3 arrays; crops are drawn with the caller's numpy Generator."""

    def __init__(self, images: list[np.ndarray], min_size: int):
        self.images = [im for im in images if min(im.shape[:2]) >= min_size]
        if not self.images:
            raise ValueError(f"no training image is at least {min_size} pixels on its short side")
        # larger photos are drawn more often, by the square root of their area, so a few
        # multi-megapixel wallpapers do not crowd out hundreds of small photos
        sides = np.sqrt([im.shape[0] * im.shape[1] for im in self.images])
        self.weights = sides / sides.sum()

    @classmethod
    def from_files(cls, files: list[tuple[Path, int]], min_size: int) -> "PhotoPool":
        return cls([load_rgb(path, downscale) for path, downscale in files], min_size)

    def crop(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """One size x size uint8 crop with a random flip and rot90."""
        image = self.images[rng.choice(len(self.images), p=self.weights)]
        h, w = image.shape[:2]
        y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
        patch = image[y:y + size, x:x + size]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        return np.rot90(patch, k=int(rng.integers(0, 4)))

    def batch(self, count: int, size: int, rng: np.random.Generator) -> torch.Tensor:
        """count x 3 x size x size float32 in 0..1."""
        crops = np.stack([self.crop(size, rng) for _ in range(count)])
        return torch.from_numpy(crops.astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()


def kodak_validation_crops(names=("kodim03.png", "kodim05.png", "kodim14.png", "kodim23.png"),
                           size: int = 256) -> torch.Tensor:
    """Centre crops of a few kodak24 images: N x 3 x size x size in 0..1."""
    crops = []
    for name in names:
        image = load_rgb(KODAK24 / name)
        h, w = image.shape[:2]
        y, x = (h - size) // 2, (w - size) // 2
        crops.append(image[y:y + size, x:x + size])
    return torch.from_numpy(np.stack(crops).astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()


class RealWorldPairs(torch.utils.data.IterableDataset):
    """Endless (LR, HR) batches through the second-order real-world chain
    (`core.degradations.realesrgan_degrade`, or `degrade`: e.g. MM-RealSR's `coupled_degrade`).

    Run in one loader process (`real_world_batches`), so the training step never waits for the
    chain: measured here on one thread, the chain costs ~10 ms per 128x128 HR patch, about 0.1 s
    of a 1 s RRDB-lite step at batch 8. A precomputed cache would cost the same per pair and
    repeat pairs; a loader process costs a tenth of the second core and never repeats one.
    The stream is seeded by (seed, first step, loader index), so a resumed run draws a reproducible stream."""

    def __init__(self, pool: PhotoPool, batch: int, patch: int, scale: int, seed: int, first_step: int,
                 degrade=realesrgan_degrade):
        super().__init__()
        self.pool, self.batch, self.patch, self.scale = pool, batch, patch, scale
        self.seed, self.first_step, self.degrade = seed, first_step, degrade

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, self.first_step, worker.id if worker else 0])
        generator = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
        while True:
            hr = self.pool.batch(self.batch, self.patch * self.scale, rng)
            yield self.degrade(hr, self.scale, generator), hr


def real_world_batches(pool: PhotoPool, batch: int, patch: int, scale: int, seed: int,
                       first_step: int, workers: int = 1, degrade=realesrgan_degrade):
    """An iterator of (LR, HR) float batches made by `workers` loader processes (0: in this one)."""
    dataset = RealWorldPairs(pool, batch, patch, scale, seed, first_step, degrade)
    if workers == 0:
        return iter(dataset)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers,
                                         prefetch_factor=4, persistent_workers=True)
    return iter(loader)
