"""Models used across the lessons."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def mlp(in_features: int, hidden: Sequence[int] = (256, 256), out_features: int = 1,
        activation: type[nn.Module] = nn.ReLU, dropout: float = 0.0, batch_norm: bool = False,
        input_dropout: float = 0.0, dropout_every_block: bool | None = None) -> nn.Sequential:
    """A multilayer perceptron ``in -> hidden... -> out``.

    Each hidden block is ``Linear -> [BatchNorm1d] -> activation``. Dropout (``dropout > 0``)
    follows the course's one rule, *dropout only after the last batch norm*: without batch
    norm every hidden block ends with ``Dropout(dropout)``; with batch norm only the last
    hidden block does, so no dropout feeds a batch norm (whose input variance would then
    differ between train and eval; lesson 04 measures it). ``dropout_every_block=True``
    forces dropout after every block also with batch norm (only to show that shift);
    ``False`` puts it after the last block only in either case. ``input_dropout`` adds a
    Dropout on the inputs (no batch norm comes before it). Input ``(N, in_features)``,
    output ``(N, out_features)`` logits.
    """
    every = (not batch_norm) if dropout_every_block is None else bool(dropout_every_block)
    layers: list[nn.Module] = []
    if input_dropout > 0:
        layers.append(nn.Dropout(input_dropout))
    width = in_features
    for i, h in enumerate(hidden):
        layers.append(nn.Linear(width, h))
        if batch_norm:
            layers.append(nn.BatchNorm1d(h))
        layers.append(activation())
        if dropout > 0 and (every or i == len(hidden) - 1):
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


class DigitsCNN(nn.Module):
    """A small CNN for ``(N, 1, 8, 8)`` digits: two conv blocks and a linear classifier.

    Block: ``Conv2d(3x3, padding 1) -> [BatchNorm2d] -> ReLU -> MaxPool2d(2)``: the first
    conv and batch norm work on 8x8 maps, the pool makes them 4x4, the second conv and batch
    norm work on those 4x4 maps, the second pool makes them 2x2; then
    ``Flatten -> [Dropout] -> Linear(channels[1]*4, num_classes)`` (dropout after the last
    batch norm).
    Output ``(N, num_classes)`` logits.
    """

    def __init__(self, channels: Sequence[int] = (16, 32), num_classes: int = 10,
                 dropout: float = 0.0, batch_norm: bool = False):
        super().__init__()
        c1, c2 = channels

        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=not batch_norm),
                    *( [nn.BatchNorm2d(cout)] if batch_norm else []),
                    nn.ReLU(), nn.MaxPool2d(2)]

        self.features = nn.Sequential(*block(1, c1), *block(c1, c2))
        head: list[nn.Module] = [nn.Flatten()]
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        head.append(nn.Linear(c2 * 4, num_classes))
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def dropout_passes(model: nn.Module, x: torch.Tensor, T: int) -> torch.Tensor:
    """Softmax outputs of ``T`` stochastic passes, shape ``(T, N, K)`` for ``x`` of ``(N, ...)``.

    ``p_t = softmax(model(x))`` with every ``nn.Dropout`` in training mode (a fresh mask per
    pass) and every other module in eval mode (batch norm uses its running statistics, which
    stay unchanged); no gradients. Lesson 03's MC-dropout demonstration uses it. The model is
    left in eval mode afterwards, whatever its modes were before.
    """
    model.eval()
    for mod in model.modules():
        if isinstance(mod, nn.Dropout):
            mod.train()
    try:
        with torch.no_grad():
            return torch.stack([torch.softmax(model(x), dim=-1) for _ in range(T)])
    finally:
        model.eval()
