"""modeling."""
from modeling.generator import (BitTokenTransformer, EmbeddingTokenTransformer, MaskedTokenTransformer,
                                build_generator, load_generator_checkpoint)
from modeling.masking import label_drop_mask, mask_tokens
from modeling.mlm_loss import MLMLoss
from modeling.sampling import sample, sampling_kwargs
from modeling.token_splits import combine_tokens, split_tokens
