"""Typed schema of every experiment config: the single place where config keys and their defaults live.

YAML files in `configs/` only override these defaults. Every key the code reads is declared here with a
comment; a key that is not declared is an error (see `utils.config`). Section and key names follow the
official MaskBit configs so that their YAMLs keep working.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional


# --------------------------------------------------------------------------------------------- experiment
@dataclass
class ExperimentConfig:
    project: str = "MaskBit"  # tracker project name
    name: str = "maskbit"  # run name; output goes to $WORKSPACE/outputs/<name> unless output_dir is set
    output_dir: Optional[str] = None  # explicit output directory (overrides $WORKSPACE/outputs/<name>)
    max_train_examples: int = 1_281_167  # dataset size, for the logged `epoch` (the train stream is infinite)
    save_every: int = 20_000  # checkpoint period in optimizer steps
    eval_every: int = 20_000  # evaluation period in optimizer steps
    generate_every: int = 2000  # image-grid period in optimizer steps
    log_every: int = 50  # scalar logging period
    log_grad_norm_every: int = 100_000  # per-parameter gradient-norm logging period
    logger: str = "tensorboard"  # tensorboard | wandb
    resume: bool = True  # continue from the newest complete checkpoint-<step> in the output directory
    resume_lr_scheduler: bool = True  # restore the LR scheduler state when resuming
    resume_optimizer_hparams: str = "config"  # on resume, lr / schedule / weight decay from: config | checkpoint
    overwrite: bool = False  # with resume=false: move a run already in the output folder aside and start over
    keep_last: int = 2  # number of checkpoint-<step> folders to keep (0 keeps all)
    init_checkpoint: str = ""  # warm start: full training state from this checkpoint folder
    init_weight: str = ""  # TiTok (official key): plain model weights loaded before training (stage 2: the stage-1
    # weights, plus the MaskGIT-VQGAN pixel_ keys); a weights file, run folder or checkpoint-<step> folder
    vqgan_checkpoint: str = ""  # tokenizer weights (eval_tokenizer, and the frozen tokenizer of train_maskbit)
    generator_checkpoint: str = ""  # generator weights (eval_maskbit)


# ------------------------------------------------------------------------------------------------- models
@dataclass
class VQModelConfig:
    model_class: str = "vqgan+"  # vqgan+ | maskgit (legacy decoder indices) | taming (Taming VQGAN, inference) | titok
    # | maskgit_vqgan (TiTok's MaskGIT-VQGAN, open-muse key names) | maskgit_pytorch_taming (MaskGIT-pytorch v1's Taming
    # VQGAN f16) | llamagen_vq (Halton-MaskGIT's LlamaGen VQ-16): these two read codebook_size, token_size (code
    # dimension), hidden_channels (ch), channel_mult and num_res_blocks, and take [-1, 1] images (model.maskgit)
    quantizer_type: str = "lookup-free"  # lookup-free (LFQ) | lookup (VQ codebook)
    codebook_size: int = 4096  # VQ codebook rows; for LFQ it is always 2**token_size
    token_size: int = 12  # latent channels: bits K for LFQ, embedding dim for VQ
    commitment_cost: float = 0.25
    entropy_loss_weight: float = 0.02  # weight of (per-sample entropy - gamma * batch entropy)
    entropy_loss_temperature: float = 0.01
    entropy_gamma: float = 1.0
    distributed_entropy: bool = False  # all-reduce batch-entropy statistics across processes (official: off)
    use_l2_normalisation: bool = False  # VQ only: L2-normalise latents and codebook rows
    num_channels: int = 3
    hidden_channels: int = 128
    channel_mult: List[int] = field(default_factory=lambda: [1, 1, 2, 2, 4])
    num_resolutions: int = 5
    num_res_blocks: int = 2
    num_res_blocks_decoder: Optional[int] = None  # decoder blocks per level; None = num_res_blocks
    sample_with_conv: bool = True  # stride-2 conv downsampling (True) or 2x2 average pooling (False)
    # --- TiTok (model_class: titok), official key names; codebook_size, token_size, commitment_cost as above
    use_l2_norm: bool = False  # L2-normalise latents and codebook rows (TiTok VQ)
    quantize_mode: str = "vq"  # vq | vae
    vit_enc_model_size: str = "large"  # small | base | large (width/layers/heads table)
    vit_dec_model_size: str = "large"
    vit_enc_patch_size: int = 16
    vit_dec_patch_size: int = 16
    num_latent_tokens: int = 32  # N: the 1D token sequence length
    finetune_decoder: bool = True  # stage 2: encoder, quantizer and latent tokens frozen; MaskGIT-VQGAN pixel decoder
    is_legacy: bool = True  # the released two-stage models' encoder-head reshape (docs/design/titok-facts.md §2.1)
    pretrained_tokenizer_weight: str = ""  # MaskGIT-VQGAN weights (stage-1 proxy codes, stage-2 pixel decoder init)
    vit_enc_width: Optional[int] = None  # overrides of the size table (reduced test models)
    vit_enc_layers: Optional[int] = None
    vit_enc_heads: Optional[int] = None
    vit_dec_width: Optional[int] = None
    vit_dec_layers: Optional[int] = None
    vit_dec_heads: Optional[int] = None
    vit_init_std: float = 0.02  # official trunc-normal std of the ViTs' linear/conv/embedding weights. At reduced
    # widths the same std passes ~sqrt(width/768) less of the image through: a width-64 ViT's tokens vary 2.5%
    # between images at 0.02 and 16% at 0.1 (configs/quickstart/titok_tiny_*.yaml set 0.1)
    pixel_vqgan_hidden_channels: int = 128  # width of the MaskGIT-VQGAN (pixel decoder / proxy-code tokenizer)
    pixel_vqgan_channel_mult: Optional[List[int]] = None  # its levels; None = the release's [1, 1, 2, 2, 4] (f16).
    # Reduced models only: fewer levels = less downsampling (the proxy grid must equal the decoder's patch grid)


@dataclass
class DiscriminatorConfig:
    name: str = "VQGAN+Discriminator"  # VQGAN+Discriminator | Original (pix2pix PatchGAN)
    num_channels: int = 3
    num_stages: int = 4
    hidden_channels: int = 128
    blur_resample: bool = True
    blur_kernel_size: int = 4  # 3, 4 or 5


@dataclass
class MLMModelConfig:
    model_cls: str = "lfq_bert"  # lfq_bert (embedding-free bit tokens) | bert (embedding tables, VQ tokens)
    hidden_dim: int = 1024
    depth: int = 24
    heads: int = 16
    mlp_dim: int = 4096
    dropout: float = 0.1
    num_classes: int = 1000  # class id num_classes is the null (dropped) class
    codebook_splits: int = 2
    use_prenorm: bool = False
    class_label_dropout: float = 0.1
    train_mask_schedule_strategy: str = "arccos"  # arccos | cosine | linear | square
    min_masking_ratio: float = 0.0
    # sampling
    num_steps: int = 64
    gen_mask_schedule_strategy: str = "arccos"
    softmax_temperature: float = 1.0
    randomize_temperature: float = 8.2
    guidance_scale: float = 7.1
    guidance_annealing: str = "cosine"  # none | linear | cosine
    scale_pow: float = 3.0
    use_sampling_annealing: bool = False
    sampler: str = "maskbit"  # maskbit | confidence_v1 | confidence_v2 | halton (those use model.maskgit_sampler)


@dataclass
class TiTokGeneratorConfig:  # model.generator: TiTok's MaskGIT generators on 1D tokens, official key names
    model_type: str = ""  # ViT (ImageBert) | UViT (UViTBert); '' = no TiTok generator (model.mlm_model is used)
    hidden_size: int = 768
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    intermediate_size: int = 3072
    dropout: float = 0.1
    attn_drop: float = 0.1
    class_label_dropout: float = 0.1
    image_seq_len: int = 32  # must equal model.vq_model.num_latent_tokens (the YAMLs interpolate it)
    condition_num_classes: int = 1000
    # sampling (defaults of the official `generate`)
    num_steps: int = 8
    randomize_temperature: float = 4.5
    guidance_scale: float = 3.0
    guidance_decay: str = "constant"  # constant | linear | power-cosine
    guidance_scale_pow: float = 3.0
    softmax_temperature_annealing: bool = False


@dataclass
class MaskGITPytorchConfig:  # model.maskgit: MaskGIT-pytorch v1 / Halton-MaskGIT v2 transformers (official names)
    version: str = ""  # v1 (MaskTransformer) | v2 (Halton-MaskGIT Transformer); '' = not this family
    # codebook_size (K; mask id K) comes from model.vq_model, the token-grid side (f_factor / input_size) from the
    # tokenizer and dataset.preprocessing.resolution (img_size)
    hidden_dim: int = 768
    depth: int = 24
    heads: int = 16
    mlp_dim: int = 3072
    dropout: float = 0.1
    nclass: int = 1000  # class nclass (v2) / table row K + 1 + nclass (v1) is the null (dropped) class
    register: int = 1  # v2: learned register tokens appended after the image tokens
    proj: int = 1  # v2: patchify factor (1 in every released model, the only one implemented)
    # training (docs/design/maskgit-pytorch-facts.md §5); label smoothing is losses.mlm.label_smoothing (v1 0.1, v2 0)
    drop_label: float = 0.1  # probability of dropping each sample's label (null class)
    mask_schedule: str = "arccos"  # masking probability of r ~ U(0, 1): linear | square | cosine | arccos (v2 + root)
    mask_value: Optional[int] = None  # value of masked tokens; None = the mask id K. v1 only: <= 0 = random codes


@dataclass
class MaskGITSamplerConfig:  # model.maskgit_sampler: MaskGIT-pytorch v1 / Halton-MaskGIT v2 samplers; None = official
    scheduler: str = ""  # confidence | halton; '' = the version's default (v1 confidence, v2 halton)
    step: Optional[int] = None  # default 8 (v1), 32 (v2)
    w: Optional[float] = None  # CFG weight, default 3.0 (v1/v2 confidence ramp it as w*i/(S-1); Halton constant)
    sm_temp: Optional[float] = None  # confidence: logits multiplied by it (default 1.0)
    r_temp: Optional[float] = None  # confidence: Gumbel scale of the confidence (default 4.5)
    randomize: Any = None  # confidence: linear | warm_up | random | none (default linear); halton: true | false
    sched_mode: Optional[str] = None  # confidence: root | linear | square | cosine | arccos (default arccos)
    sm_temp_min: Optional[float] = None  # halton: temperature ramp linspace(min, max, step)^temp_pow (1.0, 1.0)
    sm_temp_max: Optional[float] = None
    temp_pow: Optional[float] = None  # halton (default 1.0)
    temp_warmup: Optional[int] = None  # halton: steps with the temperature halved (default 0)
    top_k: Optional[int] = None  # halton: draw among the top-k (default -1 = all)
    sched_pow: Optional[float] = None  # halton: accepted and unused, as officially (default 2.0)
    cumulative: Optional[bool] = None  # halton: re-write all earlier cells each step, the 5ffd61f release (false)


@dataclass
class ModelConfig:
    vq_model: VQModelConfig = field(default_factory=VQModelConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    mlm_model: MLMModelConfig = field(default_factory=MLMModelConfig)
    generator: TiTokGeneratorConfig = field(default_factory=TiTokGeneratorConfig)
    maskgit: MaskGITPytorchConfig = field(default_factory=MaskGITPytorchConfig)
    maskgit_sampler: MaskGITSamplerConfig = field(default_factory=MaskGITSamplerConfig)


# ------------------------------------------------------------------------------------------------- losses
@dataclass
class MLMLossConfig:
    label_smoothing: float = 0.1
    sum_splits: bool = False  # multiply the loss by the number of splits
    loss_weight_unmasked_token: float = 0.1  # TiTok generators only: loss weight of unmasked tokens (masked: 1)


@dataclass
class LossesConfig:
    quantizer_weight: float = 1.0
    perceptual_loss: str = "resnet50"  # resnet50 | convnext_s | lpips | none
    perceptual_weight: float = 0.1
    perceptual_loss_on_logits: bool = True  # False: layer4 features + logits
    perceptual_weights_path: str = ""  # local weights file for the perceptual network ('' = torchvision cache)
    perceptual_random_init: bool = False  # tests only: build the perceptual network with random weights
    reconstruction_loss: str = "l2"  # l2 | l1
    reconstruction_weight: float = 4.0
    discriminator_start: int = 20_000
    discriminator_loss: str = "hinge"  # hinge | vanilla (hinge generator loss) | non-saturating
    discriminator_factor: float = 1.0
    discriminator_weight: float = 0.02
    discriminator_gradient_penalty: str = "none"  # none | adopt_weight (Taming adaptive weight)
    lecam_regularization_weight: float = 0.001
    lecam_ema_decay: float = 0.999
    entropy_annealing_steps: int = 2000
    entropy_annealing_factor: float = 2.0
    kl_weight: float = 1e-6  # TiTok VAE (single-stage): weight of sum(KL) / batch (official default)
    logvar_init: float = 0.0  # TiTok VAE: frozen scalar log-variance; reconstruction loss / exp(logvar)
    mlm: MLMLossConfig = field(default_factory=MLMLossConfig)


# --------------------------------------------------------------------------------------------------- data
@dataclass
class DatasetParamsConfig:
    source: str = "webdataset"  # webdataset (tar shards) | image_folder (root/<class>/*.jpg)
    train_shards_path_or_url: str = ""  # brace pattern of train shards, or the train root folder
    eval_shards_path_or_url: str = ""  # brace pattern of eval shards, or the eval root folder
    pretokenized_shards_path_or_url: str = ""  # Stage II: token-shard folder of scripts/pretokenize.py; when set,
    # train_maskbit reads tokens from it instead of tokenizing train images on the fly (official)
    pretokenize_num_views: int = 4  # scripts/pretokenize.py: augmented views (random crop + flip) kept per image
    shuffle_buffer_size: int = 1000
    shard_cache_dir: str = ""  # local copies of shards named by URL (https://, pipe:, s3://); '' = ~/.cache/maskbit/shards
    num_workers_per_gpu: int = 8
    pin_memory: bool = True
    persistent_workers: bool = True


@dataclass
class PreprocessingConfig:
    resolution: int = 256
    crop_size: Optional[int] = None  # TiTok's name for the image size: when set, resolution follows it
    use_aspect_ratio_aug: bool = True  # RandomResizedCrop ratio (3/4, 4/3) instead of (1, 1)
    use_random_crop: bool = True  # False: resize + center crop (requires min_scale == 1)
    min_scale: float = 0.8
    interpolation: str = "bilinear"  # bilinear | bicubic
    # TiTok's train transform (official key names): when resize_shorter_edge is set, Resize(shorter edge) ->
    # RandomCrop (random_crop true) or CenterCrop -> horizontal flip (random_flip); None = true. The MaskBit keys
    # above (use_random_crop, min_scale, use_aspect_ratio_aug) are then not used.
    resize_shorter_edge: Optional[int] = None
    random_crop: Optional[bool] = None
    random_flip: Optional[bool] = None


@dataclass
class DatasetConfig:
    params: DatasetParamsConfig = field(default_factory=DatasetParamsConfig)
    preprocessing: PreprocessingConfig = field(default_factory=PreprocessingConfig)


# ----------------------------------------------------------------------------------------- optimisation
@dataclass
class OptimizerParamsConfig:
    learning_rate: float = 1e-4
    discriminator_learning_rate: float = 1e-4
    scale_lr: bool = False  # multiply lrs by per-GPU batch x processes x accumulation
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 1e-4
    epsilon: float = 1e-8
    # AdamW kernel: null = fused on CUDA, multi-tensor (foreach) elsewhere (bitwise the single-tensor update);
    # true = fused wherever PyTorch has it (CUDA and CPU: last-bit differences); false = foreach everywhere
    fused: Optional[bool] = None


@dataclass
class OptimizerConfig:
    name: str = "adamw"
    params: OptimizerParamsConfig = field(default_factory=OptimizerParamsConfig)


@dataclass
class LRSchedulerParamsConfig:
    learning_rate: float = 1e-4  # informational (official configs interpolate the optimizer lr here)
    warmup_steps: int = 5_000
    min_lr_ratio: float = 0.1  # floor of cosine_with_minimum, as a fraction of the peak lr
    num_cycles: int = 1  # cosine_with_restarts: hard restarts (cosine cycles) after warm-up (official default 1)
    power: float = 1.0  # polynomial: decay exponent (official default 1.0 = linear to lr_end)
    lr_end: float = 1e-7  # polynomial: final lr, absolute (official 1e-7; must be below the optimizer's lr)
    end_lr: float = 0.0  # cosine_to_end_lr (TiTok's "cosine"): final lr, absolute (TiTok configs: 1e-5)


@dataclass
class LRSchedulerConfig:
    # cosine_with_minimum | cosine | cosine_with_restarts | polynomial | linear | constant | constant_with_warmup
    # | cosine_to_end_lr (TiTok)
    scheduler: str = "cosine_with_minimum"
    params: LRSchedulerParamsConfig = field(default_factory=LRSchedulerParamsConfig)


@dataclass
class TrainingConfig:
    gradient_accumulation_steps: int = 1
    per_gpu_batch_size: int = 16
    mixed_precision: str = "no"  # no | bf16 | fp16
    enable_tf32: bool = True
    use_ema: bool = True
    ema_decay: float = 0.999
    seed: int = 42
    max_train_steps: int = 1_350_000
    overfit_batch: bool = False
    overfit_batch_num: int = 1
    num_generated_images: int = 2  # images in each training grid (<= per_gpu_batch_size)
    max_grad_norm: float = 1.0
    channels_last: bool = False  # convert conv models and images to channels_last memory format
    compile: bool = False  # torch.compile the models' forward (eager fallback with one warning; same math)
    gradient_checkpointing: bool = False  # recompute model stages in backward: less memory, same numerics
    # DistributedDataParallel's gradient all-reduce (several processes only; same results bit for bit, only speed):
    ddp_bucket_cap_mb: float = 25.0  # MiB per gradient bucket; 25 = PyTorch's defaults (1 MiB first bucket), other
    #                                  values size the first bucket too (e.g. 100: a tiny model's gradients in one)
    ddp_gradient_as_bucket_view: bool = False  # gradients as views into the buckets: one copy fewer per step


# --------------------------------------------------------------------------------------------- evaluation
@dataclass
class EvaluationConfig:
    inception_weights_path: str = ""  # pt_inception-2015-12-05-6726825d.pth ('' = torch hub cache)
    fid_stats_path: str = ""  # reference .npz with mu/sigma for gFID
    num_samples: int = 50_000  # generator evaluation sample count
    batch_size: int = 100  # generator evaluation batch size per process
    compute_lpips: bool = True  # LPIPS in tokenizer evaluation (needs VGG16 weights + the lpips package heads)
    compute_inception: bool = True  # rFID/gFID and Inception Score (needs the Inception weights)
    inception_dtype: str = "float64"  # float64 (official) | float32 (faster, results differ slightly)
    lpips_vgg_weights_path: str = ""  # torchvision vgg16-397923af.pth ('' = torch hub cache)
    lpips_heads_path: str = ""  # LPIPS v0.1 VGG heads ('' = lpips/weights/v0.1/vgg.pth of the lpips package)
    random_init: bool = False  # tests/benchmarks only: random Inception/VGG weights (metrics are meaningless)
    seed: int = 0  # gFID: class-order permutation and per-sample seeds (sample i uses seed + i)
    seeds: List[int] = field(default_factory=list)  # gFID: one sample set per seed, each scored, + mean/std ([] = [seed])
    feature_cache_dir: str = ""  # Inception feature cache of the ADM evaluation ('' = <output dir>/inception_features)
    protocol: str = "adm"  # samples -> uint8: adm (ours) | maskgit_v1 (per-image min-max) | maskgit_v2 (bicubic 299)


# ----------------------------------------------------------------------------------------------- sampling
@dataclass
class SampleConfig:  # scripts/sample.py (sampling settings live in the generator family's model section)
    classes: List[int] = field(default_factory=lambda: [1, 7, 282, 604, 724, 179, 751, 404, 850])  # one grid row each
    per_class: int = 4  # images per class (grid columns)
    seed: int = 0  # grid image k (row-major) uses seed + k, whatever the batch size
    batch_size: int = 32
    output: str = "samples.png"  # PNG grid
    dtype: str = "fp32"  # fp32 | bf16 (generator under bf16 autocast; opt-in, results differ slightly)
    compile: bool = False  # torch.compile the generator forward of each sampling step (eager fallback, same math)
    device: str = ""  # '' = cuda if available, else cpu


# ------------------------------------------------------------------------------------------------ editing
@dataclass
class EditConfig:  # scripts/edit.py (sampling settings: the generator's own section, as for sampling)
    image: str = ""  # an image file, or a folder of images (each edited with the same mask spec)
    mask: str = ""  # mask PNG, white = regenerate: the input image's size, or the model's R x R view of it
    box: List[int] = field(default_factory=list)  # [top, left, height, width]: regenerate this box (R x R pixels)
    keep: List[int] = field(default_factory=list)  # [top, left, height, width]: class editing, keep only this box
    outpaint: List[int] = field(default_factory=list)  # [top, bottom, left, right] pixels added around the image
    class_id: Optional[int] = None  # the class the masked region is generated as
    num_samples: int = 4  # edits per image; edit k of image i uses seed + i * num_samples + k
    seed: int = 0
    grow: int = 0  # dilate the token mask by this many tokens
    splits: List[int] = field(default_factory=list)  # bit-token splits to regenerate ([] = whole tokens; [0] = low
    # bits only)
    blend: bool = True  # blend the decoded edit into the reconstruction around the mask (modeling.editing)
    batch_size: int = 16  # edits per generator batch
    output: str = "edits"  # folder: grid.png and <image name>/{input,mask_overlay,reconstruction,edit_k}.png
    device: str = ""  # '' = the accelerate process's device (cuda if available)


# ------------------------------------------------------------------------------------------------- root
@dataclass
class Config:
    config: Optional[str] = None  # path of the YAML this config was loaded from
    print_config: bool = False  # print the merged config and exit
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    losses: LossesConfig = field(default_factory=LossesConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    lr_scheduler: LRSchedulerConfig = field(default_factory=LRSchedulerConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    edit: EditConfig = field(default_factory=EditConfig)
