"""helpers.training.train_many: many seeds at once give what each seed gives alone."""

import torch

from helpers import data, models, training


def _make(drop=0.0):
    def make(seed):
        torch.manual_seed(seed)
        return models.mlp(20, (32, 32), 1, dropout=drop)
    return make


def test_stacked_training_matches_one_model_at_a_time():
    splits = [data.twenty_features(40, 100, seed=s, device="cpu") for s in (3, 4)]
    many, hists = training.train_many(_make(), splits, [3, 4], 30, lr=1e-2, progress=False)
    for seed, split, model, hist in zip((3, 4), splits, many, hists):
        alone = _make()(seed)
        h = training.train(alone, split, 30, lr=1e-2, progress=False)
        assert abs(h.val_loss[-1] - hist.val_loss[-1]) < 1e-4
        for p, q in zip(alone.parameters(), model.parameters()):
            assert torch.allclose(p, q, atol=1e-4)


def test_minibatches_dropout_and_eval_every():
    split = data.twenty_features(40, 100, seed=0, device="cpu")
    _, hists = training.train_many(_make(0.3), split, [0, 1, 2], 10, lr=1e-2, batch_size=16,
                                   eval_every=5, progress=False)
    assert [h.epoch for h in hists] == [[5, 10]] * 3
    assert len({round(h.val_loss[-1], 6) for h in hists}) == 3   # different seeds, different runs


def test_batch_norm_models_fall_back_to_one_at_a_time():
    split = data.twenty_features(40, 100, seed=0, device="cpu")

    def make(seed):
        torch.manual_seed(seed)
        return models.mlp(20, (16,), 1, batch_norm=True)

    ms, hists = training.train_many(make, split, [0, 1], 3, progress=False)
    assert len(ms) == 2 and all(len(h) == 3 for h in hists)
