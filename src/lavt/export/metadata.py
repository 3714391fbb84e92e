"""What an exported ONNX graph carries besides its weights (``metadata_props``).

Everything a runtime needs to use the graph with no other file: the model's
architecture config, the tokenizer vocabulary, the input size, the token
count, the image normalisation, the weight precision, and a format tag with a
version, so that a file not written by :func:`lavt.export.export_onnx` is
recognised and refused. All values are strings (ONNX ``StringStringEntryProto``);
lists and dicts are JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from lavt.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from lavt.errors import CheckpointError
from lavt.modeling.config import LAVTConfig

FORMAT = "lavt-onnx"
FORMAT_VERSION = 1
PREFIX = "lavt."

INPUT_NAMES = ("image", "input_ids", "attention_mask")
OUTPUT_NAMES = ("logits",)
#: the second output of a model with a no-target head: (B, 2), class 1 = "no object"
NO_TARGET_OUTPUT = "no_target_logits"

PREPROCESS = (
    "RGB image resized to img_size x img_size (bilinear, aspect ratio not kept), "
    "scaled to [0, 1], minus mean, divided by std, NCHW float32"
)
TOKENIZATION = (
    "lowercased WordPiece over vocab: [CLS] tokens [SEP] cut to max_tokens ids, "
    "padded with id 0; attention_mask 1 on kept ids (int64)"
)
POSTPROCESS = (
    "logits (B, 2, img_size, img_size): resize bilinearly (align_corners=False) to the "
    "image size, softmax over axis 1; class 1 > 0.5 is the referred object. "
    "no_target_logits (B, 2), where the model has a no-target head: softmax, class 1 > 0.5 "
    "means the expression names no object (the mask is then empty)"
)


@dataclass(frozen=True)
class OnnxMetadata:
    """The lavt entries of an exported graph.

    ``config`` has ``img_size`` and ``max_text_len`` set to the export's fixed
    image side and token count, so ``tokenizer_for_model`` and the predictor
    read the right values off it.
    """

    config: LAVTConfig
    vocab: list[str]
    img_size: int
    max_tokens: int
    dtype: str  # "fp32" or "fp16": the precision of the weights inside the graph
    dynamic_batch: bool
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    source: str = ""
    producer: str = ""

    @property
    def output_names(self) -> tuple[str, ...]:
        """``("logits",)``, plus ``"no_target_logits"`` for a model with a no-target head."""
        head = getattr(self.config, "no_target_head", False)
        return (*OUTPUT_NAMES, NO_TARGET_OUTPUT) if head else OUTPUT_NAMES

    def to_props(self) -> dict[str, str]:
        """The ``metadata_props`` entries (keys prefixed ``lavt.``)."""
        values = {
            "format": FORMAT,
            "format_version": str(FORMAT_VERSION),
            "config": json.dumps(self.config.to_dict()),
            "vocab": json.dumps(self.vocab, ensure_ascii=False),
            "img_size": str(self.img_size),
            "max_tokens": str(self.max_tokens),
            "dtype": self.dtype,
            "dynamic_batch": json.dumps(self.dynamic_batch),
            "mean": json.dumps(list(self.mean)),
            "std": json.dumps(list(self.std)),
            "inputs": json.dumps(
                {
                    "image": "(B, 3, img_size, img_size) float32",
                    "input_ids": "(B, max_tokens) int64",
                    "attention_mask": "(B, max_tokens) int64",
                }
            ),
            "outputs": json.dumps({"logits": "(B, 2, img_size, img_size) float32"}),
            "preprocess": PREPROCESS,
            "tokenization": TOKENIZATION,
            "postprocess": POSTPROCESS,
            "source": self.source,
            "producer": self.producer,
        }
        return {PREFIX + key: value for key, value in values.items()}

    @classmethod
    def from_props(cls, props: Mapping[str, str], *, where: str) -> OnnxMetadata:
        """Parse the entries written by :meth:`to_props`; ``where`` names the file in errors."""
        if props.get(PREFIX + "format") != FORMAT:
            raise CheckpointError(
                f"{where}: ONNX model without lavt metadata (not written by lavt export)"
            )
        version = props.get(PREFIX + "format_version", "")
        if version != str(FORMAT_VERSION):
            raise CheckpointError(
                f"{where}: lavt ONNX format version {version!r} is not supported "
                f"(this lavt reads version {FORMAT_VERSION})"
            )
        try:
            config = LAVTConfig.from_dict(json.loads(props[PREFIX + "config"]))
            vocab = json.loads(props[PREFIX + "vocab"])
            meta = cls(
                config=config,
                vocab=vocab,
                img_size=int(props[PREFIX + "img_size"]),
                max_tokens=int(props[PREFIX + "max_tokens"]),
                dtype=props[PREFIX + "dtype"],
                dynamic_batch=bool(json.loads(props[PREFIX + "dynamic_batch"])),
                mean=tuple(float(v) for v in json.loads(props[PREFIX + "mean"])),
                std=tuple(float(v) for v in json.loads(props[PREFIX + "std"])),
                source=props.get(PREFIX + "source", ""),
                producer=props.get(PREFIX + "producer", ""),
            )
        except (KeyError, ValueError, TypeError) as err:
            raise CheckpointError(f"{where}: malformed lavt metadata ({err})") from None
        if not isinstance(vocab, list) or not all(isinstance(t, str) for t in vocab):
            raise CheckpointError(f"{where}: malformed lavt metadata (vocab is not a token list)")
        if (meta.img_size, meta.max_tokens) != (config.img_size, config.max_text_len):
            raise CheckpointError(f"{where}: malformed lavt metadata (sizes disagree)")
        return meta
