"""Our generator against an independent transcription of the official modules (docs/design/reference-facts.md §6).

The reference below is written from the facts with stock torch.nn pieces (nn.MultiheadAttention, label dropping
by in-place indexing, bits via a Python loop); ours must reproduce its seeded initial weights bit for bit and
its outputs to float tolerance.
"""
import pytest
import torch
from torch import nn

from modeling.generator import BitTokenTransformer, EmbeddingTokenTransformer
from modeling.transformer import SelfAttention

TINY = dict(codebook_splits=2, seq_len=16, hidden_dim=32, depth=2, heads=4, mlp_dim=64, dropout=0.1,
            num_classes=10)




class RefAttention(nn.Module):
    def __init__(self, dim, heads, dropout, prenorm):
        super().__init__()
        self.mha = nn.MultiheadAttention(dim, num_heads=heads, dropout=dropout, batch_first=True, bias=True)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim, eps=1e-12)
        self.prenorm = prenorm

    def forward(self, x):
        if self.prenorm:
            y = self.norm(x)
            return self.dropout(self.mha(y, y, y, need_weights=False)[0]) + x
        return self.norm(self.dropout(self.mha(x, x, x, need_weights=False)[0]) + x)


class RefFeedForward(nn.Module):
    def __init__(self, dim, hidden, dropout, prenorm):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim), nn.Dropout(dropout))
        self.norm = nn.LayerNorm(dim, eps=1e-12)
        self.prenorm = prenorm

    def forward(self, x):
        return self.net(self.norm(x)) + x if self.prenorm else self.norm(self.net(x) + x)


class RefTrunk(nn.Module):
    def __init__(self, dim, depth, heads, mlp, dropout, prenorm):
        super().__init__()
        self.layers = nn.ModuleList([nn.ModuleList([RefAttention(dim, heads, dropout, prenorm),
                                                    RefFeedForward(dim, mlp, dropout, prenorm)])
                                     for _ in range(depth)])

    def forward(self, x):
        for attn, ffn in self.layers:
            x = ffn(attn(x))
        return x


def ref_init(m):
    if isinstance(m, nn.Linear):
        m.weight.data = nn.init.trunc_normal_(m.weight.data, mean=0.0, std=0.02)
        if m.bias is not None:
            m.bias.data.zero_()
    elif isinstance(m, nn.Embedding):
        m.weight.data = nn.init.trunc_normal_(m.weight.data, mean=0.0, std=0.02)
    elif isinstance(m, nn.LayerNorm):
        m.bias.data.zero_()
        m.weight.data.fill_(1.0)


class RefGenerator(nn.Module):
    """`lfq=True`: LFQBert; `lfq=False`: Bert (embedding tables, tied output, per-position bias)."""

    def __init__(self, lfq, bits, codebook_splits, seq_len, hidden_dim, depth, heads, mlp_dim, dropout,
                 num_classes, use_prenorm=False):
        super().__init__()
        self.lfq, self.splits, self.seq_len, self.null = lfq, codebook_splits, seq_len, num_classes
        eb = bits // codebook_splits
        self.V = 2 ** eb
        if lfq:
            self.register_buffer("bits_to_indices", torch.pow(2.0, torch.arange(0, eb)).int())
        self.class_emb = nn.Embedding(num_classes + 1, hidden_dim)
        if lfq:
            self.input_proj = nn.Linear(bits, hidden_dim)
        else:
            self.tok_emb_list = nn.ModuleList([nn.Embedding(self.V + 1, hidden_dim) for _ in range(codebook_splits)])
        self.pos_emb = nn.init.trunc_normal_(nn.Parameter(torch.zeros(1, seq_len + 1, hidden_dim)), 0., 0.02)
        self.first_layer = nn.Sequential(nn.LayerNorm(hidden_dim, eps=1e-12), nn.Dropout(dropout))
        self.use_prenorm = use_prenorm
        self.transformer = RefTrunk(hidden_dim, depth, heads, mlp_dim, dropout, use_prenorm)
        if use_prenorm:
            self.norm_after_transformer = nn.LayerNorm(hidden_dim, eps=1e-12)
        self.last_layer = nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.GELU(),
                                        nn.LayerNorm(hidden_dim, eps=1e-12))
        if lfq:
            self.prediction_layer = nn.Linear(hidden_dim, codebook_splits * self.V)
        else:
            self.bias = nn.ParameterList([nn.Parameter(torch.zeros(seq_len, self.V))
                                          for _ in range(codebook_splits)])
        self.apply(ref_init)

    def forward(self, tokens, labels, drop):
        b = tokens.shape[0]
        cls = labels.view(b, -1)
        cls[drop] = self.null  # in place, as the official code
        if self.lfq:
            groups = []
            for s in range(self.splits):
                t = tokens[..., s]
                bits = torch.stack([((t >> i) & 1).float() * 2 - 1 for i in range(self.V.bit_length() - 1)], -1)
                groups.append(torch.where((t == self.V)[..., None], torch.zeros_like(bits), bits))
            x = self.input_proj(torch.cat(groups, -1))
        else:
            x = self.tok_emb_list[0](tokens[..., 0])
            for s in range(1, self.splits):
                x = x + self.tok_emb_list[s](tokens[..., s])
        x = torch.cat([x, self.class_emb(cls)], 1) + self.pos_emb
        x = self.transformer(self.first_layer(x))
        if self.use_prenorm:
            x = self.norm_after_transformer(x)
        x = self.last_layer(x)
        if self.lfq:
            return self.prediction_layer(x).view(b, self.seq_len + 1, self.splits, self.V)[:, :self.seq_len]
        return torch.stack([x @ e.weight.T[:, :self.V] for e in self.tok_emb_list], 2)[:, :self.seq_len] + \
            torch.stack(list(self.bias), 1)


def _inputs(seed, V, batch=3, seq_len=16, splits=2, num_classes=10):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, V, (batch, seq_len, splits), generator=g)
    tokens[torch.rand(tokens.shape, generator=g) < 0.4] = V  # mask id
    labels = torch.randint(0, num_classes, (batch,), generator=g)
    drop = torch.tensor([False, True, False])
    return tokens, labels, drop


@pytest.mark.parametrize("lfq,bits,prenorm", [(True, 6, False), (True, 10, True), (False, 8, False)])
def test_seeded_init_and_outputs_match_reference(lfq, bits, prenorm):
    cls = BitTokenTransformer if lfq else EmbeddingTokenTransformer
    torch.manual_seed(123)
    ours = cls(bits=bits, use_prenorm=prenorm, **TINY)
    torch.manual_seed(123)
    ref = RefGenerator(lfq, bits, use_prenorm=prenorm, **TINY)

    ours_sd, ref_sd = ours.state_dict(), ref.state_dict()
    assert list(ours_sd) == list(ref_sd)
    for key in ref_sd:  # same random-number consumption order -> identical initial weights
        assert ours_sd[key].dtype == ref_sd[key].dtype and torch.equal(ours_sd[key], ref_sd[key]), key

    ours.eval(), ref.eval()
    tokens, labels, drop = _inputs(0, ours.mask_token)
    expected = ref(tokens.clone(), labels.clone(), drop)
    got = ours(tokens, labels, drop)
    assert got.shape == (3, 16, 2, ours.effective_codebook_size)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_sdpa_attention_equals_multihead_attention():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(48, 6, dropout=0.1, batch_first=True, bias=True)
    with torch.no_grad():  # non-trivial biases
        mha.in_proj_bias.normal_()
        mha.out_proj.bias.normal_()
    ours = SelfAttention(48, 6, dropout=0.1)
    ours.load_state_dict(mha.state_dict())
    mha.eval(), ours.eval()
    x = torch.randn(2, 33, 48)
    torch.testing.assert_close(ours(x), mha(x, x, x, need_weights=False)[0], rtol=1e-5, atol=1e-6)


def test_attention_init_matches_multihead_attention():
    torch.manual_seed(7)
    mha = nn.MultiheadAttention(64, 4, batch_first=True)
    torch.manual_seed(7)
    ours = SelfAttention(64, 4)
    for key, value in mha.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key


def test_attention_dropout_active_only_in_training():
    torch.manual_seed(0)
    attn = SelfAttention(32, 4, dropout=0.5)
    x = torch.randn(2, 9, 32)
    attn.train()
    assert not torch.allclose(attn(x), attn(x))
    attn.eval()
    assert torch.equal(attn(x), attn(x))
