"""Lesson 07: realistic wrong answers and what their verdict must mention (issue 18)."""

import copy
import math

import torch


class _Base:
    def __init__(self, patience, min_delta=0.0):
        self.patience, self.min_delta = patience, min_delta
        self.best_loss, self.best_epoch = float("inf"), None
        self.counter, self.epoch, self.best = 0, -1, None

    def improved(self, v):
        return v < self.best_loss - self.min_delta

    def save(self, model):
        return copy.deepcopy(model.state_dict())

    def step(self, val_loss, model):
        self.epoch += 1
        if self.improved(val_loss):
            self.best_loss, self.best_epoch, self.counter = val_loss, self.epoch, 0
            self.best = self.save(model)
        else:
            self.counter += 1
        return self.counter >= self.patience

    def restore_best(self, model):
        model.load_state_dict(self.best)


class ESNoCopy(_Base):
    def save(self, model):
        return model.state_dict()


class ESTies(_Base):
    def improved(self, v):
        return v <= self.best_loss - self.min_delta


class ESNoReset(_Base):
    def step(self, val_loss, model):
        self.epoch += 1
        if self.improved(val_loss):
            self.best_loss, self.best_epoch = val_loss, self.epoch
            self.best = self.save(model)
        else:
            self.counter += 1
        return self.counter >= self.patience


class ESTensor(_Base):
    def step(self, val_loss, model):
        return torch.tensor(super().step(val_loss, model))


class ESMisspelt(_Base):
    def __init__(self, patience, min_delta=0.0):
        super().__init__(patience, min_delta)
        del self.best_loss
        self.best_los = float("inf")

    def improved(self, v):
        return v < self.best_los - self.min_delta

    def step(self, val_loss, model):
        self.epoch += 1
        if self.improved(val_loss):
            self.best_los, self.best_epoch, self.counter = val_loss, self.epoch, 0
            self.best = self.save(model)
        else:
            self.counter += 1
        return self.counter >= self.patience


class ESAssign(_Base):
    def restore_best(self, model):
        model.load_state_dict(self.best, assign=True)


class ESWrongAttr(_Base):
    def restore_best(self, model):
        model.load_state_dict(self.best_state)          # never set: AttributeError


def cos_tensor(step, total_steps, lr_max, lr_min=0.0):
    t = torch.tensor(step / total_steps)
    return lr_min + (lr_max - lr_min) * (1 + torch.cos(math.pi * t)) / 2


def cos_clamped(step, total_steps, lr_max, lr_min=0.0):
    step = min(step, total_steps)
    return lr_min + (lr_max - lr_min) * (1 + math.cos(math.pi * step / total_steps)) / 2


def cos_no_pi(step, total_steps, lr_max, lr_min=0.0):
    return lr_min + (lr_max - lr_min) * (1 + math.cos(step / total_steps)) / 2


def _cos(step, total_steps, lr_max, lr_min):
    return lr_min + (lr_max - lr_min) * (1 + math.cos(math.pi * step / total_steps)) / 2


def wc_from_zero(step, warmup_steps, total_steps, lr_max, lr_min=0.0):
    if step < warmup_steps:
        return lr_max * step / warmup_steps
    return _cos(step - warmup_steps, total_steps - warmup_steps, lr_max, lr_min)


def wc_global_step(step, warmup_steps, total_steps, lr_max, lr_min=0.0):
    if step < warmup_steps:
        return lr_max * (step + 1) / warmup_steps
    return _cos(step, total_steps - warmup_steps, lr_max, lr_min)


def wc_scheduler(step, warmup_steps, total_steps, lr_max, lr_min=0.0):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr_max)
    S = torch.optim.lr_scheduler
    sch = S.SequentialLR(opt, [S.LinearLR(opt, 1 / warmup_steps, total_iters=warmup_steps - 1),
                               S.CosineAnnealingLR(opt, total_steps - warmup_steps, lr_min)],
                         milestones=[warmup_steps])
    for _ in range(step):
        opt.step()
        sch.step()
    return opt.param_groups[0]["lr"]


BANK = [
    ("ex7.1", "keeps model.state_dict() itself (no copy)", ESNoCopy, ["not a copy", "deep copy"]),
    ("ex7.1", "a tie counted as an improvement", ESTies, ["Ties", "strict"]),
    ("ex7.1", "counter never reset", ESNoReset, ["never reset"]),
    ("ex7.1", "step returns a tensor", ESTensor, ["Python bool"]),
    ("ex7.1", "attribute misspelt best_los", ESMisspelt, ["best_loss"]),
    ("ex7.1", "restore_best hands the saved tensors to the model", ESAssign, ["saved copy"]),
    ("ex7.1", "restore_best reads an attribute that was never set", ESWrongAttr, ["best_state", "AttributeError"]),
    ("ex7.2", "returns a 0-d tensor", cos_tensor, ["Python float"]),
    ("ex7.2", "clamps the step at total_steps", cos_clamped, ["clamps"]),
    ("ex7.2", "forgets pi in the cosine", cos_no_pi, ["factor pi"]),
    ("ex7.3", "warmup starts at 0", wc_from_zero, ["warmup starts at 0"]),
    ("ex7.3", "cosine on the global step", wc_global_step, ["global step"]),
    ("ex7.3", "builds torch's schedulers", wc_scheduler, ["lr_scheduler"]),
]
