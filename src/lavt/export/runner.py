"""An exported graph behind the model's interface, for the predictor and the evaluator.

::

    from lavt.export import load_onnx_model
    model = load_onnx_model("lavt.onnx")          # an OnnxLAVT
    logits = model(image, input_ids, attention_mask)  # torch tensors in and out

:class:`OnnxLAVT` carries what the PyTorch path reads off a model (``config``,
``vocab``, ``img_size``, ``device``, ``eval()``, ``to()``), so the predictor,
``lavt predict`` and ``lavt evaluate`` run their own pre- and post-processing
unchanged around it. :func:`load_for_runtime` picks the loader by runtime name.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from lavt.errors import CheckpointError, InputError
from lavt.export.metadata import INPUT_NAMES, NO_TARGET_OUTPUT, OnnxMetadata
from lavt.modeling.lavt import LAVTOutput
from lavt.runtime import check_readable_file

RUNTIMES = ("torch", "onnxruntime")


class OnnxLAVT:
    """Runs an ONNX graph written by :func:`lavt.export.export_onnx` with onnxruntime.

    Args:
        path: the ``.onnx`` file.
        device: ``cpu`` or ``cuda[:N]`` (needs onnxruntime's CUDA provider).
        threads: onnxruntime intra-op threads; default ``torch.get_num_threads()``
            (so ``OMP_NUM_THREADS`` limits both runtimes alike).
    """

    runtime = "onnxruntime"
    training = False

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        device: str | torch.device = "cpu",
        threads: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.threads = threads or torch.get_num_threads()
        self.device = torch.device("cpu")
        self._session = self._open(["CPUExecutionProvider"])
        self.metadata = OnnxMetadata.from_props(
            self._session.get_modelmeta().custom_metadata_map, where=str(self.path)
        )
        self._check_signature()
        self.to(device)

    # -- the attributes the PyTorch path reads off a LAVT

    @property
    def config(self):
        """The :class:`LAVTConfig` (``img_size``, ``max_text_len``: the export's)."""
        return self.metadata.config

    @property
    def vocab(self) -> list[str]:
        return self.metadata.vocab

    @property
    def no_target_head(self) -> bool | None:
        """True when the graph carries a no-target head's logits, else None (as on a
        LAVT without one: callers test ``is not None``)."""
        return True if NO_TARGET_OUTPUT in self.metadata.output_names else None

    @property
    def img_size(self) -> int:
        return self.metadata.img_size

    def eval(self) -> OnnxLAVT:
        return self

    def train(self, mode: bool = True) -> OnnxLAVT:
        if mode:
            raise InputError("an ONNX model cannot be trained; use the PyTorch checkpoint")
        return self

    def to(self, device: str | torch.device | None = None, dtype=None, **_) -> OnnxLAVT:
        """Move to ``device``; ``dtype`` is ignored (the graph's precision is fixed)."""
        if device is None:
            return self
        device = torch.device(device)
        if device.type == self.device.type and device.index == self.device.index:
            return self
        if device.type == "cpu":
            self._session = self._open(["CPUExecutionProvider"])
        elif device.type == "cuda":
            self._session = self._open(self._cuda_providers(device))
        else:
            raise InputError(f"device {device}: onnxruntime runs on cpu or cuda", param="device")
        self.device = device
        return self

    @staticmethod
    def postprocess(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The model's own postprocessing (``LAVT.postprocess``): one function for both."""
        from lavt.modeling.lavt import LAVT

        return LAVT.postprocess(logits, size)

    # -- running

    def __call__(
        self,
        image: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        *,
        return_no_target: bool = False,
    ) -> torch.Tensor | LAVTOutput:
        """image (B, 3, S, S); input_ids, attention_mask (B, N) -> logits (B, 2, S, S) float32.

        ``return_no_target=True`` returns ``LAVTOutput(logits, no_target_logits)`` as a
        LAVT does: the graph's (B, 2) no-target logits, or None when it has no head.
        """
        self._check_inputs(image, input_ids)
        feeds = {
            "image": image.detach().float().cpu().numpy(),
            "input_ids": input_ids.detach().long().cpu().numpy(),
            "attention_mask": attention_mask.detach().long().cpu().numpy(),
        }
        if self.metadata.dynamic_batch:
            outputs = self._run(feeds)
        else:  # a static graph takes one row at a time
            rows = [
                self._run({k: v[r : r + 1] for k, v in feeds.items()})
                for r in range(len(feeds["image"]))
            ]
            outputs = [np.concatenate(parts) for parts in zip(*rows, strict=True)]
        logits, *head = [torch.from_numpy(o).to(self.device) for o in outputs]
        if not return_no_target:
            return logits
        return LAVTOutput(logits, head[0] if head else None)

    forward = __call__

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The graph's outputs in ``metadata.output_names`` order."""
        return self._session.run(list(self.metadata.output_names), feeds)

    def _check_inputs(self, image: torch.Tensor, input_ids: torch.Tensor) -> None:
        size, tokens = self.metadata.img_size, self.metadata.max_tokens
        if image.ndim != 4 or tuple(image.shape[1:]) != (3, size, size):
            raise InputError(
                f"img_size {tuple(image.shape[-2:])}: {self.path.name} was exported for "
                f"(3, {size}, {size}) images, got {tuple(image.shape)}",
                param="img_size",
            )
        if input_ids.ndim != 2 or input_ids.shape[1] != tokens:
            raise InputError(
                f"{self.path.name} was exported for {tokens} tokens per expression, "
                f"got input_ids of shape {tuple(input_ids.shape)}"
            )
        vocab = self.config.text.vocab_size
        if input_ids.numel() and int(input_ids.max()) >= vocab:  # as modeling.text does
            raise ValueError(
                f"token id {int(input_ids.max())} is outside the text encoder's vocabulary "
                f"of {vocab}: the tokenizer does not match this model"
            )

    # -- session

    def _open(self, providers: list):
        import onnxruntime as ort

        check_readable_file(self.path, "ONNX model", a_what="an ONNX model", error=CheckpointError)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        try:
            return ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as err:  # onnxruntime raises its own (Fail, InvalidProtobuf...)
            first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
            raise CheckpointError(
                f"{self.path}: not a readable ONNX model ({type(err).__name__}: {first})"
            ) from None

    def _cuda_providers(self, device: torch.device) -> list:
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise InputError(
                f"device {device}: this onnxruntime has no CUDA provider (install onnxruntime-gpu)",
                param="device",
            )
        return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]

    def _check_signature(self) -> None:
        inputs = tuple(i.name for i in self._session.get_inputs())
        outputs = tuple(o.name for o in self._session.get_outputs())
        expected = self.metadata.output_names
        if inputs != INPUT_NAMES or outputs != expected:
            raise CheckpointError(
                f"{self.path}: graph inputs {inputs} / outputs {outputs} are not "
                f"{INPUT_NAMES} / {expected}"
            )

    def __repr__(self) -> str:
        m = self.metadata
        return (
            f"OnnxLAVT({self.path.name}, img_size={m.img_size}, max_tokens={m.max_tokens}, "
            f"dtype={m.dtype}, device={self.device})"
        )


def load_onnx_model(
    path: str | os.PathLike, *, device: str | torch.device = "cpu", threads: int | None = None
) -> OnnxLAVT:
    """Open an exported graph; :class:`CheckpointError` for a file that is not ours."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise InputError(
            "runtime onnxruntime: the onnxruntime package is not installed "
            "(pip install 'lavt[onnx]')",
            param="runtime",
        ) from None
    return OnnxLAVT(path, device=device, threads=threads)


def load_for_runtime(
    path: str | os.PathLike | None, *, runtime: str = "torch", device: str | torch.device = "cpu"
):
    """The model to predict or evaluate with: a LAVT (``torch``) or an :class:`OnnxLAVT`.

    ``path`` None means the bundled default model (PyTorch only).
    """
    if runtime not in RUNTIMES:
        raise InputError(
            f"runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}", param="runtime"
        )
    if runtime == "onnxruntime":
        if path is None:
            raise InputError(
                "checkpoint: runtime onnxruntime needs an exported .onnx file "
                "(there is no bundled one)",
                param="checkpoint",
            )
        return load_onnx_model(path, device=device)
    from lavt.assets import default_model_path
    from lavt.checkpoint import load_model

    path = Path(path) if path is not None else default_model_path()
    if path.suffix == ".onnx":
        raise InputError(
            f"runtime torch: {path} is an ONNX model (it needs runtime onnxruntime)",
            param="runtime",
        )
    return load_model(path, device=device)
