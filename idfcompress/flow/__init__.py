"""The Integer Discrete Flow: its config and model store (``config``, ``store``: no torch),
the networks and layers (``layers``, ``nets``, ``model``), the glue between flow stages and
the ANS coder (``coding``) and training (``training``). Only the modules that run a network
import torch."""
