"""Training: the published LAVT recipe, distributed and resumable.

One process (CPU, or one GPU)::

    lavt train --config configs/refcoco_lavt.yaml --data-root ./refer/data

One node, 4 GPUs (the reference ``lavt`` setting: batch 8 per GPU, 32 in total)::

    torchrun --standalone --nproc_per_node 4 -m lavt train --config configs/refcoco_lavt.yaml

Two nodes with 4 GPUs each; run the same command on every node, with HOST the
address of one of them (the c10d rendezvous needs no ranks by hand). A dead
worker restarts the job, which continues its last checkpoint by itself
(:mod:`~lavt.train.elastic`; the variable works around pytorch/pytorch#135712)::

    TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 torchrun --nnodes 2 --nproc_per_node 4 \\
        --rdzv_backend c10d --rdzv_endpoint HOST:29500 --rdzv_id refcoco_lavt \\
        --max-restarts 3 --rdzv_conf join_timeout=600 \\
        -m lavt train --config configs/refcoco_lavt.yaml

From Python::

    import lavt.train
    lavt.train.main(lavt.train.TrainConfig(dataset="refcoco", data_root="./refer/data"))

The run directory (``output_dir/model_id``) must be on storage every node sees:
rank 0 writes it, every rank reads the checkpoint on resume. Workers stop when
their ``torchrun`` launcher dies.

Modules: :mod:`~lavt.train.config` (``TrainConfig``: every option, YAML,
``key=value``, flags), :mod:`~lavt.train.trainer` (``main``),
:mod:`~lavt.train.loop` (``train_one_epoch``, ``train_step``),
:mod:`~lavt.train.resume` (RNG state, sampler, ``last.pt``),
:mod:`~lavt.train.elastic` (torchrun restarts, lost processes),
:mod:`~lavt.train.runlog` (log file, metrics, curves), :mod:`~lavt.train.model`,
:mod:`~lavt.train.optim`, :mod:`~lavt.train.losses`.
"""

from lavt.train.config import TrainConfig, resolve_config
from lavt.train.loop import train_one_epoch, train_step
from lavt.train.trainer import main

__all__ = ["TrainConfig", "main", "resolve_config", "train_one_epoch", "train_step"]
