"""Pre-tokenize a train set into token shards (`scripts/pretokenize.py`; format in `data.token_shards`).

The tokenizer is passed in (any `modeling.SpatialTokenizer`, or a 1D tokenizer such as TiTok); its token grid
((h, w), or (N,) for 1D tokens) and bits define the shards.

Image i of the train source (in its sample order) is handled by process i % W and stored as `num_views` views,
view v augmented with the train transform on a generator seeded by (seed, i, v). The tokens therefore depend
only on the data, the config and the tokenizer, never on the process or worker count (bitwise on CPU; on GPU
up to cuDNN's choice of convolution algorithms, as the on-the-fly tokens of training).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from data.loaders import build_source
from data.streams import derive_seed
from data.token_shards import META_FILE, TokenShardWriter, token_dtype, write_meta
from data.transforms import decode_image, to_float, transforms_from_config
from modeling.tokenizer import tokenize, tokenizer_fingerprint
from utils.config import to_plain

logger = logging.getLogger(__name__)
VIEW_STREAM = 20  # derived-seed tag of the pretokenizing augmentations


class AugmentedViews(Dataset):
    """Item j: (views (V, 3, R, R) uint8, class id, source position) of the image at `positions[j]`; an
    unreadable image gives zeros and class id -1 (logged, then left out by the reader)."""

    def __init__(self, source, transform, positions: range, num_views: int, seed: int):
        self.source, self.transform, self.positions = source, transform, positions
        self.num_views, self.seed = num_views, seed
        self._refs = None

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, j: int):
        if self._refs is None:  # listed lazily, once per worker
            self._refs = self.source.eval_refs()
        position = self.positions[j]
        try:
            key, data, class_id = self.source.load(self._refs[position])
            image = decode_image(data)
        except Exception as err:  # damaged data of any kind: skip the image, keep the row
            logger.warning("skipping unreadable sample %s: %s: %s", position, type(err).__name__, err)
            size = self.transform.resolution
            return torch.zeros(self.num_views, 3, size, size, dtype=torch.uint8), -1, position
        views = [self.transform(image, torch.Generator().manual_seed(derive_seed(VIEW_STREAM, self.seed, position, v)))
                 for v in range(self.num_views)]
        return torch.stack(views), class_id, position


def _check_output_dir(out: Path) -> None:
    if (out / META_FILE).exists() or list(out.glob("tokens-*.npy")):
        raise FileExistsError(f"'{out}' already holds token shards; delete it or set "
                              f"dataset.params.pretokenized_shards_path_or_url to a new folder")


def pretokenize(dataset, tokenizer: torch.nn.Module, state, batch_size: int, seed: int,
                tokenizer_meta: Optional[dict] = None, show_progress: bool = True) -> dict:
    """Tokenize the train set of the `dataset` config section into `dataset.params.pretokenized_shards_path_or_url`:
    this process writes its shard, then the main process writes the metadata. Returns the run summary.

    `state` is an `accelerate.PartialState` (process index/count, device, barriers, object gathering); `seed` seeds
    the augmentations; `tokenizer_meta` (e.g. the tokenizer's config and checkpoint path) is recorded in the
    metadata next to the tokenizer's weight fingerprint.
    """
    from accelerate.utils import gather_object

    params = dataset.params
    out = Path(params.pretokenized_shards_path_or_url) if params.pretokenized_shards_path_or_url else None
    if out is None or any(c in str(out) for c in "{}*?"):
        raise ValueError(f"dataset.params.pretokenized_shards_path_or_url must name the output folder, got "
                         f"'{params.pretokenized_shards_path_or_url}'")
    num_views = params.pretokenize_num_views
    if num_views < 1:
        raise ValueError(f"dataset.params.pretokenize_num_views must be >= 1, got {num_views}")
    if tokenizer.token_bits is None:  # a VAE (continuous latents) or a codebook whose size is not a power of two
        raise ValueError(f"{type(tokenizer).__name__} has no discrete tokens of a whole number of bits (codebook size "
                         f"{getattr(tokenizer, 'codebook_size', None)}); only such tokenizers can be pretokenized")
    _check_output_dir(out)
    state.wait_for_everyone()
    out.mkdir(parents=True, exist_ok=True)

    source = build_source(dataset, "train")
    positions = range(state.process_index, len(source.eval_refs()), state.num_processes)
    grid = tokenizer.token_grid(dataset.preprocessing.resolution)
    bits = tokenizer.token_bits
    train_transform, _ = transforms_from_config(dataset.preprocessing)
    views = AugmentedViews(source, train_transform, positions, num_views, seed)
    workers = params.num_workers_per_gpu
    loader = DataLoader(views, batch_size=batch_size, num_workers=workers,
                        pin_memory=torch.cuda.is_available(), persistent_workers=False)
    writer = TokenShardWriter(out, state.process_index, len(positions), num_views, grid, bits)
    start, row = time.perf_counter(), 0
    for images, class_ids, index in tqdm(loader, desc="pretokenize", unit="batch",
                                         disable=not (show_progress and state.is_main_process)):
        images = images.to(state.device, non_blocking=True)
        tokens = torch.stack([tokenize(tokenizer, to_float(images[:, v])) for v in range(num_views)], dim=1)
        tokens = tokens.view(len(index), num_views, *grid).cpu().numpy().astype(token_dtype(bits))
        writer.write(row, index.numpy(), class_ids.numpy(), tokens)
        row += len(index)
    path = writer.close()
    seconds = time.perf_counter() - start
    shard = {"file": path.name, "num_images": len(positions), "invalid_rows": writer.invalid_rows,
             "seconds": seconds}
    shards = sorted(gather_object([shard]), key=lambda s: s["file"])
    summary = {
        "num_images": sum(s["num_images"] for s in shards),
        "skipped": sum(len(s["invalid_rows"]) for s in shards),
        "num_views": num_views, "grid": list(grid), "token_bits": bits,
        "seconds": max(s["seconds"] for s in shards),
        "bytes": sum((out / s["file"]).stat().st_size for s in shards),
    }
    if state.is_main_process:
        write_meta(out, {
            **{k: summary[k] for k in ("num_images", "num_views", "grid", "token_bits")},
            "dtype": token_dtype(bits).name, "seed": seed,
            "shards": [{k: s[k] for k in ("file", "num_images", "invalid_rows")} for s in shards],
            "source": params.train_shards_path_or_url,
            "preprocessing": to_plain(dataset.preprocessing),
            **(tokenizer_meta or {}),
            "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
        })
    state.wait_for_everyone()
    return summary

