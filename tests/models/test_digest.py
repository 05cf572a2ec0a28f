"""state_digest: the fingerprint of a network's weights changes with every way weights change, and only then."""

from __future__ import annotations

import torch
from torch import nn

from deeplabv3p.models.digest import state_digest


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


def test_same_values_same_digest_across_instances():
    assert state_digest(_net()) == state_digest(_net())


def test_every_kind_of_weight_change_is_seen():
    model = _net()
    seen = {state_digest(model)}
    with torch.no_grad():
        model[0].weight.add_(1)  # in place
    seen.add(state_digest(model))
    model[0].weight.data.add_(1)  # .data leaves no trace in the version counter
    seen.add(state_digest(model))
    model[0].bias.data = torch.zeros(4)  # replaced through .data
    seen.add(state_digest(model))
    nn.utils.vector_to_parameters(torch.ones(sum(p.numel() for p in model.parameters())), model.parameters())
    seen.add(state_digest(model))
    model[1].running_mean += 1  # a buffer
    seen.add(state_digest(model))
    model.half()  # a dtype
    seen.add(state_digest(model))
    assert len(seen) == 7


def test_digest_once_hashes_a_model_once_within_its_block_only():
    from deeplabv3p.models.digest import digest_once

    model, other = _net(), _net()
    before = state_digest(model)
    with digest_once():
        assert state_digest(model) == before
        model[0].weight.data.add_(1)  # not seen inside the block: it stands for one job whose weights are fixed
        assert state_digest(model) == before
        other[0].weight.data.add_(1)
        assert state_digest(other) != before  # each model its own
    assert state_digest(model) != before  # seen again outside
