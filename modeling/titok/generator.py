"""MaskGIT generators on TiTok's 1D tokens: `ImageBert` (L-32 / B-64) and `UViTBert` (S-128).

    gen = build_titok_generator(model_type="ViT", hidden_size=768, num_hidden_layers=24, num_attention_heads=16,
                                intermediate_size=3072, dropout=0.1, attn_drop=0.1, image_seq_len=32,
                                condition_num_classes=1000, codebook_size=4096)
    ids = gen.generate(torch.tensor([1, 2]), guidance_scale=4.5, guidance_decay="linear",
                       randomize_temperature=9.5, softmax_temperature_annealing=True, seeds=[0, 1])

Token space (one embedding table of codebook_size + num_classes + 2 rows): ids [0, V) image codes, V the mask
token, V + 1 + c the class c, V + 1 + num_classes the null class. The class token is prepended to the N image
tokens; the head predicts the V image codes for the N image positions only.

`ImageBert` is a post-LN BERT (the official one is a Hugging Face `BertModel` with `lm_head` attached inside it);
it is re-stated here with plain torch modules under the same state-dict keys (`model.embeddings.*`,
`model.encoder.layer.{i}.*`, `model.lm_head.*`). `UViTBert` is a pre-LN U-ViT (long skips, no dropout).
The released checkpoints load into both with `strict=True`.

Sampling (`generate`) follows the official procedure step by step; its two random draws per step go through the
project noise hook `noise(kind, index, shape)` (index = step, asked in this order):
    "categorical"  standard Gumbel G (B, N, V): sampled id = argmax(logits + T_i * G), T_i = temperature * (1 - r)
    "confidence"   standard Gumbel G' (B, N): confidence = logit of the sampled id + T_i * G'
With the official sampler's Gumbel noise supplied this way, `generate` returns its tokens.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from modeling.attention import scaled_dot_product_attention
from modeling.sampling import NoiseFn, Seeds, checked_noise, per_sample_generators

GUIDANCE_DECAYS = ("constant", "linear", "power-cosine")
BERT_LAYER_NORM_EPS = 1e-12
GUMBEL_EPS = 1e-20  # the official clamp inside both logarithms of the Gumbel transform


def gumbel_from_uniform(uniform: torch.Tensor) -> torch.Tensor:
    """The official Gumbel transform of U ~ U(0, 1): -log(max(-log(max(U, 1e-20)), 1e-20))."""
    return -torch.log((-torch.log(uniform.clamp(min=GUMBEL_EPS))).clamp(min=GUMBEL_EPS))


def keep_masked_target(step: int, num_steps: int, seq_len: int) -> int:
    """floor(N * arccos((step + 1) / S) / (pi / 2)) in float64, before the clamp to [1, n_masked - 1].

    N 32 / 8 steps: 29, 26, 24, 21, 18, 14, 10 (the last step keeps nothing masked).
    """
    return int(np.floor(seq_len * (np.arccos((step + 1) / num_steps) / (math.pi * 0.5))))


# ---------------------------------------------------------------------------------------------------- BERT trunk
class BertEmbeddings(nn.Module):
    """word + token-type row 0 + absolute position, then LayerNorm (eps 1e-12) and dropout."""

    def __init__(self, vocab_size: int, hidden_size: int, max_positions: int, dropout: float):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, hidden_size)
        self.position_embeddings = nn.Embedding(max_positions, hidden_size)
        self.token_type_embeddings = nn.Embedding(2, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=BERT_LAYER_NORM_EPS)
        self.dropout = nn.Dropout(dropout)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        length = input_ids.shape[1]
        x = self.word_embeddings(input_ids) + self.token_type_embeddings.weight[0]
        x = x + self.position_embeddings.weight[:length]
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    """q/k/v projections with bias, scaled dot-product attention (1/sqrt(d)), dropout on the probabilities."""

    def __init__(self, hidden_size: int, num_heads: int, attn_drop: float):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_attention_heads {num_heads}")
        self.num_heads, self.attn_drop = num_heads, attn_drop
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, width = x.shape
        q, k, v = (proj(x).view(b, length, self.num_heads, -1).transpose(1, 2)
                   for proj in (self.query, self.key, self.value))
        out = scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return out.transpose(1, 2).reshape(b, length, width)


class BertResidualOutput(nn.Module):
    """dense -> dropout -> LayerNorm(. + residual) (BERT's self-output and output sublayers)."""

    def __init__(self, in_features: int, hidden_size: int, dropout: float):
        super().__init__()
        self.dense = nn.Linear(in_features, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=BERT_LAYER_NORM_EPS)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class BertAttention(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, dropout: float, attn_drop: float):
        super().__init__()
        self.self = BertSelfAttention(hidden_size, num_heads, attn_drop)
        self.output = BertResidualOutput(hidden_size, hidden_size, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x), x)


class BertIntermediate(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.dense = nn.Linear(hidden_size, intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # exact (erf) GELU


class BertLayer(nn.Module):
    """Post-LN block: x = LN(x + attn(x)); x = LN(x + mlp(x))."""

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, dropout: float, attn_drop: float):
        super().__init__()
        self.attention = BertAttention(hidden_size, num_heads, dropout, attn_drop)
        self.intermediate = BertIntermediate(hidden_size, intermediate_size)
        self.output = BertResidualOutput(intermediate_size, hidden_size, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attention(x)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self, num_layers: int, *args):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(*args) for _ in range(num_layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x)
        return x


class BertTrunk(nn.Module):
    """The official `BertModel(add_pooling_layer=False)`: embeddings + encoder; `lm_head` is attached to it."""

    def __init__(self, vocab_size: int, hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int,
                 dropout: float, attn_drop: float, max_positions: int):
        super().__init__()
        self.embeddings = BertEmbeddings(vocab_size, hidden_size, max_positions, dropout)
        self.encoder = BertEncoder(num_layers, hidden_size, num_heads, intermediate_size, dropout, attn_drop)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.embeddings(input_ids))


def _bert_init(module: nn.Module) -> None:
    """BERT initialiser (initializer_range 0.02): Linear / Embedding weights normal (not truncated), biases 0, LN 1/0."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# ---------------------------------------------------------------------------------------------------- U-ViT trunk
class UViTAttention(nn.Module):
    """One bias-free qkv projection split as (q|k|v, head, dim), attention in float32, no dropout, proj with bias."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden_size {dim} is not divisible by num_attention_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, width = x.shape
        qkv = self.qkv(x).view(b, length, 3, self.num_heads, width // self.num_heads).permute(2, 0, 3, 1, 4).float()
        out = scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(b, length, width))


class UViTMlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class UViTBlock(nn.Module):
    """Pre-LN block (LayerNorm eps 1e-5); blocks of the second half first fuse the long skip: Linear([x, skip])."""

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int, skip: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = UViTAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = UViTMlp(dim, mlp_hidden)
        self.skip_linear = nn.Linear(2 * dim, dim) if skip else None

    def forward(self, x: torch.Tensor, skip: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.skip_linear is not None:
            x = self.skip_linear(torch.cat([x, skip], dim=-1))
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _uvit_init(module: nn.Module) -> None:
    """U-ViT initialiser: Linear / Embedding trunc-normal(0.02) (absolute bounds +-2), biases 0, LN 1/0."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# ---------------------------------------------------------------------------------------------------- generators
class ImageBert(nn.Module):
    """Class-conditional MaskGIT generator on TiTok tokens (official `ImageBert`, `model_type: ViT`)."""

    def __init__(self, image_seq_len: int = 32, hidden_size: int = 768, num_hidden_layers: int = 24,
                 num_attention_heads: int = 16, intermediate_size: int = 3072, dropout: float = 0.1,
                 attn_drop: float = 0.1, codebook_size: int = 4096, condition_num_classes: int = 1000):
        super().__init__()
        self.image_seq_len, self.codebook_size, self.condition_num_classes = image_seq_len, codebook_size, \
            condition_num_classes
        self.target_codebook_size = codebook_size  # official name
        self.num_classes = condition_num_classes
        self.mask_token_id = codebook_size
        self.null_token_id = codebook_size + 1 + condition_num_classes  # the dropped-class id
        self.vocab_size = codebook_size + condition_num_classes + 2
        self.hidden_size, self.num_hidden_layers, self.num_attention_heads = hidden_size, num_hidden_layers, \
            num_attention_heads
        self.intermediate_size, self.dropout, self.attn_drop = intermediate_size, dropout, attn_drop
        self._build()

    def _build(self) -> None:
        # Same order as the official: the BERT modules are built and initialised, then lm_head is attached
        # inside the trunk and initialised the same way.
        self.model = BertTrunk(self.vocab_size, self.hidden_size, self.num_hidden_layers, self.num_attention_heads,
                               self.intermediate_size, self.dropout, self.attn_drop, self.image_seq_len + 1)
        self.model.apply(_bert_init)
        self.model.lm_head = nn.Linear(self.hidden_size, self.codebook_size)
        _bert_init(self.model.lm_head)

    def _sequence_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, 1 + N) ids -> (B, N, V) logits of the image positions."""
        return self.model.lm_head(self.model(input_ids)[:, 1:])

    def forward(self, input_ids: torch.Tensor, condition: torch.Tensor, cond_drop_prob: float = 0.1,
                drop_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """input_ids (B, N) in [0, V] (V = mask), condition (B,) classes -> logits (B, N, V). Inputs are not modified.

        Each sample's class is replaced by the null class where `drop_mask` (B,) is True; without `drop_mask`
        it is drawn as the official does, `rand_like(condition) < cond_drop_prob` from the global RNG (so a
        draw is consumed even for cond_drop_prob 0 or 1).
        """
        batch = input_ids.shape[0]
        if drop_mask is None:
            drop_mask = torch.rand_like(condition, dtype=torch.float) < cond_drop_prob
        class_ids = condition.reshape(-1) + (self.codebook_size + 1)
        class_ids = class_ids.masked_fill(drop_mask.reshape(-1).to(class_ids.device), self.null_token_id)
        sequence = torch.cat([class_ids.view(batch, 1), input_ids.reshape(batch, -1)], dim=1)
        return self._sequence_logits(sequence)

    def masking_input_tokens(self, input_tokens: torch.Tensor, timesteps: Optional[torch.Tensor] = None,
                             noise: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Training masking: (B, N) tokens -> (masked tokens, bool masks), both (B, N); the input is not modified.

        `timesteps` (B,) and `noise` (B, N) are the official's two U(0, 1) draws, taken in that order from the
        global RNG when not given. count = max(round(N * clamp(arccos(t) / (pi/2), 1e-6, 1)), 1) (half to even);
        position j is masked iff argsort(noise)[j] < count: the permutation itself is compared with the count
        (official quirk; the ranks of the noise would be its inverse). Exactly `count` positions are masked.
        """
        batch, seq_len = input_tokens.shape
        device = input_tokens.device
        if timesteps is None:
            timesteps = torch.zeros(batch, device=device).uniform_(0, 1.0)
        ratio = (torch.acos(timesteps.float()) / (math.pi * 0.5)).clamp(min=1e-6, max=1.0)
        count = (seq_len * ratio).round().clamp(min=1)
        if noise is None:
            noise = torch.rand(batch, seq_len, device=device)
        masks = noise.argsort(dim=-1) < count.view(batch, 1)
        return torch.where(masks, self.mask_token_id, input_tokens), masks

    @torch.no_grad()
    def generate(self, condition: Union[torch.Tensor, Sequence[int]], guidance_scale: float = 3.0,
                 guidance_decay: str = "constant", guidance_scale_pow: float = 3.0,
                 randomize_temperature: float = 4.5, softmax_temperature_annealing: bool = False,
                 num_sample_steps: int = 8, noise: Optional[NoiseFn] = None, seeds: Seeds = None,
                 return_steps: bool = False, shared_count: bool = False
                 ) -> Union[torch.Tensor, Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Sample (B, N) int64 token ids for the class ids `condition` (official `generate`, titok-facts §6.5).

        Per step i (r = (i+1)/S, T_i = randomize_temperature * (1 - r)): guided logits (two separate forwards,
        conditional and null class, whenever the guidance scale is non-zero; "constant" cond + g (cond - uncond),
        "linear" the same with g * i/S, "power-cosine" uncond + w (cond - uncond) with
        w = (g - 1)(1 - cos(pi (i/S)^pow)) / 2 + 1 in float32); optional division by 0.5 + 0.8 (1 - r);
        every masked position draws an id from softmax(logits / T_i) (argmax at T_i = 0); its confidence is its
        logit + T_i * Gumbel (decided positions +inf); the least confident are re-masked (ties at the cut-off
        included), keeping max(1, min(n_masked - 1, floor(N arccos(r) / (pi/2)))) masked; the last step keeps all.

        Draws: `noise(kind, index, shape)` (module docstring) supplies them in the official form, else each sample
        draws from its own generator (`seeds`, see `modeling.sampling.per_sample_generators`), so a sample
        depends only on its seed and class. The categorical draw then uses one uniform per position (inverse
        CDF of softmax(logits / T_i): the same law as the official Gumbel-max over V uniforms, V times cheaper).

        Keep-masked count: per sample by default; the official takes sample 0's masked count for the whole
        batch (`shared_count=True`). The two agree whenever all samples have the same masked count, i.e. always
        except after an exact confidence tie at the cut-off.

        `return_steps=True` returns `(ids, [ids after each step])` (re-masked ids; the last entry is `ids`).
        The model runs in eval mode (its mode is restored) under no_grad; the global RNG is used only to draw
        seeds when `seeds` is None (class dropping is passed explicitly, not drawn).
        """
        if guidance_decay not in GUIDANCE_DECAYS:
            raise ValueError(f"Unsupported guidance_decay '{guidance_decay}'; choose one of {GUIDANCE_DECAYS}")
        device = next(self.parameters()).device
        labels = torch.as_tensor(condition).reshape(-1).long()
        if labels.numel() == 0 or labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError(f"class ids must be in [0, {self.num_classes}), got {labels.tolist()}")
        labels = labels.to(device)
        batch, seq_len, steps = labels.numel(), self.image_seq_len, num_sample_steps
        generators = per_sample_generators(seeds, batch) if noise is None else None
        keep_label = torch.zeros(batch, dtype=torch.bool, device=device)
        was_training = self.training
        self.eval()
        try:
            ids = torch.full((batch, seq_len), self.mask_token_id, dtype=torch.long, device=device)
            cfg_scale = guidance_scale if guidance_decay == "constant" else 0.0
            history = []
            for step in range(steps):
                ratio = (step + 1) / steps
                temperature = randomize_temperature * (1.0 - ratio)
                is_mask = ids == self.mask_token_id
                if guidance_decay == "power-cosine":  # float32 tensor, as the official
                    power = torch.ones(1, device=device) * guidance_scale_pow
                    cfg_scale = (guidance_scale - 1) * ((1 - torch.cos((step / steps) ** power * math.pi)) * 1 / 2) + 1
                if bool(cfg_scale != 0):
                    cond = self.forward(ids, labels, drop_mask=keep_label)
                    uncond = self.forward(ids, labels, drop_mask=~keep_label)
                    base = uncond if guidance_decay == "power-cosine" else cond
                    logits = base + (cond - uncond) * cfg_scale
                else:
                    logits = self.forward(ids, labels, drop_mask=keep_label)
                if softmax_temperature_annealing:
                    logits = logits / (0.5 + 0.8 * (1 - ratio))

                if noise is None:
                    uniform = torch.stack([torch.rand((2, seq_len), generator=g) for g in generators]).to(device)
                    sampled = self._draw(logits, temperature, uniform[:, 0])
                    gumbel = gumbel_from_uniform(uniform[:, 1])
                else:
                    gumbel_v = checked_noise(noise, "categorical", step, tuple(logits.shape), device)
                    sampled = (logits + temperature * gumbel_v).argmax(dim=-1)
                    gumbel = checked_noise(noise, "confidence", step, (batch, seq_len), device)
                score = logits.gather(-1, sampled.unsqueeze(-1)).squeeze(-1)
                sampled = torch.where(is_mask, sampled, ids)
                score = torch.where(is_mask, score, torch.inf).float()

                if step == steps - 1:
                    ids = sampled
                else:
                    confidence = score + temperature * gumbel
                    n_masked = is_mask.sum(dim=-1)
                    if shared_count:
                        n_masked = n_masked[:1].expand(batch)
                    count = (n_masked - 1).clamp(max=keep_masked_target(step, steps, seq_len)).clamp(min=1)
                    cut_off = confidence.sort(dim=-1).values.gather(1, (count - 1).view(batch, 1))
                    ids = torch.where(confidence <= cut_off, self.mask_token_id, sampled)
                if guidance_decay == "linear":
                    cfg_scale = ratio * guidance_scale
                if return_steps:
                    history.append(ids.clone())
        finally:
            self.train(was_training)
        return (ids, history) if return_steps else ids

    @staticmethod
    def _draw(logits: torch.Tensor, temperature: float, uniform: torch.Tensor) -> torch.Tensor:
        """One id per position from softmax(logits / T) by inverse CDF (argmax at T = 0); uniform (B, N)."""
        if temperature <= 0:
            return logits.argmax(dim=-1)
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        cdf = probs.cumsum(dim=-1)
        index = torch.searchsorted(cdf, (uniform * cdf[..., -1]).unsqueeze(-1), right=True).squeeze(-1)
        return index.clamp_(max=logits.shape[-1] - 1)


class UViTBert(ImageBert):
    """The S-128 generator (official `UViTBert`, `model_type: UViT`): token embedding + positions, U-ViT blocks
    (num_hidden_layers // 2 in, 1 mid, num_hidden_layers // 2 out with long skips popped last-in first-out),
    final LayerNorm, lm_head. `dropout` / `attn_drop` are accepted but unused, as in the official."""

    def _build(self) -> None:
        dim, heads, hidden = self.hidden_size, self.num_attention_heads, self.intermediate_size
        half = self.num_hidden_layers // 2
        self.embeddings = nn.Embedding(self.vocab_size, dim)
        self.pos_embed = nn.Parameter(nn.init.trunc_normal_(torch.zeros(1, self.image_seq_len + 1, dim), std=0.02))
        self.in_blocks = nn.ModuleList([UViTBlock(dim, heads, hidden) for _ in range(half)])
        self.mid_block = UViTBlock(dim, heads, hidden)
        self.out_blocks = nn.ModuleList([UViTBlock(dim, heads, hidden, skip=True) for _ in range(half)])
        self.norm = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, self.codebook_size)
        self.apply(_uvit_init)

    def _sequence_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(input_ids) + self.pos_embed[:, :input_ids.shape[1]]
        skips = []
        for block in self.in_blocks:
            x = block(x)
            skips.append(x)
        x = self.mid_block(x)
        for block in self.out_blocks:
            x = block(x, skips.pop())
        return self.lm_head(self.norm(x)[:, 1:])


GENERATOR_CLASSES = {"ViT": ImageBert, "UViT": UViTBert}


def build_titok_generator(*, model_type: str, hidden_size: int, num_hidden_layers: int, num_attention_heads: int,
                          intermediate_size: int, dropout: float, attn_drop: float, image_seq_len: int,
                          condition_num_classes: int, codebook_size: int) -> ImageBert:
    """`model.generator` values (+ the tokenizer's codebook size) -> `ImageBert` (ViT) or `UViTBert` (UViT)."""
    if model_type not in GENERATOR_CLASSES:
        raise ValueError(f"Unknown TiTok generator model_type '{model_type}'; choose one of {sorted(GENERATOR_CLASSES)}")
    return GENERATOR_CLASSES[model_type](
        image_seq_len=image_seq_len, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads, intermediate_size=intermediate_size, dropout=dropout,
        attn_drop=attn_drop, codebook_size=codebook_size, condition_num_classes=condition_num_classes)
