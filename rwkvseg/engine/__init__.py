"""The training engine: configuration, the loop, checkpoints, several processes, evaluation.

    config       TrainConfig (from_yaml, from_dict), shipped_configs        what a run depends on
    loop         train, prepare, fit_epoch, end_epoch, finish, leave,              the loop and its pieces
                 train_step, GraphedStep, graph_replay, lr_at
    checkpoint   save_checkpoint, load_checkpoint, load_model, export_model        files without pickled code
    distributed  setup_distributed, convert_batchnorm_for_ddp,                     torchrun, synchronised BN
                 leave_process_group
    evaluate     evaluate_split, evaluate_checkpoint, predict_logits, ...          the numbers of a split
"""
from rwkvseg.engine.checkpoint import CheckpointError, load_checkpoint, load_model
from rwkvseg.engine.config import TrainConfig, shipped_configs
from rwkvseg.engine.evaluate import evaluate_checkpoint, evaluate_split, format_table, predict_logits
from rwkvseg.engine.loop import (GraphedStep, Run, end_epoch, finish, fit_epoch, graph_replay, leave, lr_at,
                                 make_optimizer, prepare, train, train_step)

__all__ = ["CheckpointError", "GraphedStep", "Run", "TrainConfig", "end_epoch", "evaluate_checkpoint", "evaluate_split",
           "finish", "fit_epoch", "format_table", "graph_replay", "leave", "load_checkpoint", "load_model", "lr_at",
           "make_optimizer", "predict_logits", "prepare", "shipped_configs", "train", "train_step"]
