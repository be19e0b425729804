"""Data pipeline: synthetic images, webdataset shards, and train/eval streams with exact resume."""
from data.image_folder import ImageFolderSource
from data.loaders import build_eval_dataloader, build_source, build_train_dataloader, load_eval_images
from data.shards import ShardWriter, brace_pattern, encode_image, write_shards, write_synthetic_shards
from data.streams import EvalStream, TrainStream
from data.synthetic import CLASS_NAMES, SyntheticImages
from data.tar_index import expand_shards, index_tar
from data.token_shards import TokenShards, TokenShardWriter, TokenStream, build_token_stream
from data.transforms import EvalTransform, TrainTransform, decode_image, transforms_from_config
from data.webdataset_reader import ShardSource

__all__ = [
    "CLASS_NAMES", "EvalStream", "EvalTransform", "ImageFolderSource", "ShardSource", "ShardWriter",
    "SyntheticImages", "TokenShardWriter", "TokenShards", "TokenStream", "TrainStream", "TrainTransform",
    "brace_pattern", "build_eval_dataloader", "build_source", "build_token_stream", "build_train_dataloader",
    "decode_image", "encode_image", "expand_shards", "index_tar", "load_eval_images", "transforms_from_config",
    "write_shards", "write_synthetic_shards",
]
