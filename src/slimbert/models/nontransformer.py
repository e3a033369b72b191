"""Non-Transformer students (Tang et al., 2019, "Distilling Task-Specific Knowledge from BERT into
Simple Neural Networks"): a BiLSTM and a small CNN over the teacher's word-piece vocabulary.

Both are Hugging Face ``PreTrainedModel`` classes registered with the Auto classes, so they save,
reload, export to ONNX and get measured like every other model. Inputs are the usual
``input_ids`` (B, T) and ``attention_mask`` (B, T); pairs are read as one sequence
``[CLS] a [SEP] b [SEP]``. Padding never changes a real token's representation: the backward LSTM
reads each sequence reversed within its own length, and pooling ignores padded positions.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class BiLSTMConfig(PretrainedConfig):
    model_type = "slimbert-bilstm"

    def __init__(self, vocab_size: int = 30522, embedding_dim: int = 300, hidden_size: int = 300,
                 classifier_hidden: int = 400, dropout: float = 0.1, pad_token_id: int = 0, **kwargs):
        super().__init__(pad_token_id=pad_token_id, **kwargs)
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.hidden_size = hidden_size
        self.classifier_hidden = classifier_hidden
        self.dropout = dropout


class CNNConfig(PretrainedConfig):
    model_type = "slimbert-cnn"

    def __init__(self, vocab_size: int = 30522, embedding_dim: int = 300, kernel_sizes=(3, 4, 5), filters: int = 100,
                 dropout: float = 0.1, pad_token_id: int = 0, **kwargs):
        super().__init__(pad_token_id=pad_token_id, **kwargs)
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.kernel_sizes = list(kernel_sizes)
        self.filters = filters
        self.dropout = dropout


def _masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over real positions: x (B, T, D), mask (B, T) -> (B, D)."""
    return x.masked_fill(mask[:, :, None] == 0, torch.finfo(x.dtype).min).amax(dim=1)


def _reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row's first ``length`` positions, leave padding in place. x (B, T, D)."""
    t = torch.arange(x.shape[1], device=x.device)[None, :]  # (1, T)
    idx = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # (B, T)
    return torch.gather(x, 1, idx[:, :, None].expand(-1, -1, x.shape[2]))


class _StudentBase(PreTrainedModel):
    base_model_prefix = "student"
    main_input_name = "input_ids"
    # No attention inside: any attention implementation the caller asks for is trivially "supported".
    _supports_sdpa = True

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def get_input_embeddings(self):
        return self.embeddings

    def set_input_embeddings(self, value):
        self.embeddings = value

    def _output(self, logits, labels):
        loss = None
        if labels is not None:
            if self.config.num_labels == 1:
                loss = nn.functional.mse_loss(logits.squeeze(-1), labels.float())
            else:
                loss = nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


class BiLSTMForSequenceClassification(_StudentBase):
    """Embeddings (V, E) -> BiLSTM (2 x H) -> masked max-pool -> ReLU MLP -> logits (B, C)."""

    config_class = BiLSTMConfig

    def __init__(self, config: BiLSTMConfig):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=config.pad_token_id)
        self.forward_lstm = nn.LSTM(config.embedding_dim, config.hidden_size, batch_first=True)
        self.backward_lstm = nn.LSTM(config.embedding_dim, config.hidden_size, batch_first=True)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Sequential(
            nn.Linear(2 * config.hidden_size, config.classifier_hidden), nn.ReLU(), nn.Dropout(config.dropout),
            nn.Linear(config.classifier_hidden, config.num_labels),
        )
        self.post_init()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        lengths = attention_mask.sum(dim=1)  # (B,)
        x = self.dropout(self.embeddings(input_ids))  # (B, T, E)
        fwd, _ = self.forward_lstm(x)  # (B, T, H)
        bwd, _ = self.backward_lstm(_reverse_within_length(x, lengths))
        bwd = _reverse_within_length(bwd, lengths)  # back to reading order
        h = torch.cat([fwd, bwd], dim=-1)  # (B, T, 2H)
        logits = self.classifier(self.dropout(_masked_max(h, attention_mask)))
        return self._output(logits, labels)

    def flops_breakdown(self, seq_len: int) -> dict[str, int]:
        e, h = self.config.embedding_dim, self.config.hidden_size
        lstm = 2 * seq_len * 4 * 2 * (e + h) * h  # two directions, four gates, x and h products
        head = 2 * (2 * h * self.config.classifier_hidden + self.config.classifier_hidden * self.config.num_labels)
        return {"embeddings": 0, "recurrent": lstm, "pooler_classifier": head}


class CNNForSequenceClassification(_StudentBase):
    """Embeddings (V, E) -> parallel 1-D convolutions (kernel k, F filters each) -> ReLU -> masked max-pool -> logits."""

    config_class = CNNConfig

    def __init__(self, config: CNNConfig):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=config.pad_token_id)
        self.convs = nn.ModuleList(
            nn.Conv1d(config.embedding_dim, config.filters, k, padding=k // 2) for k in config.kernel_sizes
        )
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.filters * len(config.kernel_sizes), config.num_labels)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        x = self.dropout(self.embeddings(input_ids)).transpose(1, 2)  # (B, E, T)
        t = input_ids.shape[1]
        pooled = [_masked_max(torch.relu(conv(x))[:, :, :t].transpose(1, 2), attention_mask) for conv in self.convs]
        logits = self.classifier(self.dropout(torch.cat(pooled, dim=-1)))  # (B, C)
        return self._output(logits, labels)

    def flops_breakdown(self, seq_len: int) -> dict[str, int]:
        e, f = self.config.embedding_dim, self.config.filters
        conv = sum(2 * seq_len * e * f * k for k in self.config.kernel_sizes)
        head = 2 * f * len(self.config.kernel_sizes) * self.config.num_labels
        return {"embeddings": 0, "convolution": conv, "pooler_classifier": head}


AutoConfig.register(BiLSTMConfig.model_type, BiLSTMConfig)
AutoConfig.register(CNNConfig.model_type, CNNConfig)
AutoModelForSequenceClassification.register(BiLSTMConfig, BiLSTMForSequenceClassification)
AutoModelForSequenceClassification.register(CNNConfig, CNNForSequenceClassification)
