"""Optimizers and learning-rate schedules, with PyTorch's names, signatures and update rules.

Optimizers (each file opens with its update rule as formulas)
    SGD       (momentum, Nesterov, L2 weight decay)   minicnn/optim/sgd.py
    Adam      (bias-corrected moments, L2 weight decay) minicnn/optim/adam.py
    RMSprop   (optional momentum)                      minicnn/optim/rmsprop.py

Schedules (minicnn/optim/lr_scheduler.py)
    StepLR, ExponentialLR, CosineAnnealingLR     one step() per epoch
    OneCycleLR                                   one step() per batch
    ReduceLROnPlateau                            one step(metric) per epoch
"""
from minicnn.optim.adam import Adam
from minicnn.optim.lr_scheduler import (
    CosineAnnealingLR,
    ExponentialLR,
    LRScheduler,
    OneCycleLR,
    ReduceLROnPlateau,
    StepLR,
)
from minicnn.optim.optimizer import Optimizer
from minicnn.optim.rmsprop import RMSprop
from minicnn.optim.sgd import SGD

__all__ = [
    "Adam", "CosineAnnealingLR", "ExponentialLR", "LRScheduler", "OneCycleLR", "Optimizer",
    "RMSprop", "ReduceLROnPlateau", "SGD", "StepLR",
]
