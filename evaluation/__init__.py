"""Evaluation metrics (rFID, gFID, sFID, IS, precision/recall, PSNR, SSIM, LPIPS, codebook usage) and the evaluators
built on them; `evaluation.adm` is the ADM suite on .npz batches."""
from evaluation.adm import evaluate_npz, read_reference
from evaluation.codebook import CodebookStats
from evaluation.distributed import all_reduce_sum_, rank_and_world_size
from evaluation.frechet import GaussianStats, frechet_distance, load_fid_stats, save_fid_stats
from evaluation.generation import SampleChunks, class_labels, generate_chunks, iterate_chunk_batches
from evaluation.generator_evaluator import GeneratorEvaluator, default_is_splits
from evaluation.image_metrics import mae, mean_colour_psnr, mse, psnr, ssim
from evaluation.inception import FIDInceptionV3, build_inception, resize_bilinear_tf1, to_uint8
from evaluation.inception_score import InceptionScoreStats, inception_score
from evaluation.lpips import LPIPS
from evaluation.manifold import density_coverage, precision_recall
from evaluation.protocols import PROTOCOLS, to_uint8_protocol
from evaluation.tokenizer_evaluator import TokenizerEvaluator, evaluate_tokenizer

__all__ = [
    "CodebookStats", "GaussianStats", "GeneratorEvaluator", "FIDInceptionV3", "InceptionScoreStats", "LPIPS",
    "SampleChunks", "TokenizerEvaluator", "all_reduce_sum_", "evaluate_tokenizer", "build_inception", "class_labels", "default_is_splits", "density_coverage",
    "frechet_distance", "generate_chunks", "inception_score", "iterate_chunk_batches", "load_fid_stats", "mae",
    "mean_colour_psnr", "mse", "precision_recall", "psnr", "rank_and_world_size", "resize_bilinear_tf1", "save_fid_stats", "ssim", "to_uint8",
    "evaluate_npz", "read_reference",
    "PROTOCOLS", "to_uint8_protocol",
]
