"""Run any `AutoModelForImageTextToText` checkpoint with HF transformers (GLM-4V, Qwen2-VL, ...)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForImageTextToText

from streamwatch.inference.adapter import merge_adapter
from streamwatch.inference.backends.base import Backend, YesNo
from streamwatch.inference.backends.kernels import fp8_supported, fuse_rms_norms, linear_patch_embeddings, quantize_fp8
from streamwatch.inference.backends.positions import add_positions
from streamwatch.inference.backends.shared_image import group_by_image, last_token_logits
from streamwatch.inference.limits import PromptLimits, context_tokens, token_limits
from streamwatch.inference.types import Prompt
from streamwatch.ingest.preprocess import fit_longest_side
from streamwatch.vlm.processor import load_processor, pad_left
from streamwatch.vlm.prompts import NO_VARIANTS, YES_VARIANTS, clean_answer, prompt_style, single_token_ids
from streamwatch.vlm.torch_images import TorchImages, with_torch_images

log = logging.getLogger(__name__)

RENDERED_CACHE = 4096  # rendered prompt texts kept
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was configured but CUDA is not available on this machine")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """bf16 (or fp16 where bf16 is unsupported) on CUDA, fp32 on CPU, unless configured."""
    if dtype != "auto":
        return _DTYPES[dtype]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


class TransformersBackend(Backend):
    """Batched yes/no scoring in one forward pass, and batched greedy generation, on a model and its
    processor (`load` reads a checkpoint; a model built in memory works the same way)."""

    @classmethod
    def load(
        cls,
        model_id: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        max_image_side: int = 1280,
        attn_implementation: str = "sdpa",
        quantize: str = "none",
        preprocess: str = "auto",
        adapter: Path | None = None,
    ) -> TransformersBackend:
        """A checkpoint from a local directory or the hub, on the configured device and dtype; `adapter`: a
        LoRA adapter directory merged into its weights (inference/adapter.py)."""
        on = resolve_device(device)
        precision = resolve_dtype(dtype, on)
        started = time.monotonic()
        log.info("loading model %s on %s (%s)", model_id, on, str(precision).removeprefix("torch."))
        processor = load_processor(model_id)
        model = AutoModelForImageTextToText.from_pretrained(
            model_id, dtype=precision, attn_implementation=attn_implementation
        )
        if adapter is not None:
            model = merge_adapter(model, adapter)
            log.info("adapter %s merged into %s", adapter, model_id)
        backend = cls(model_id, processor, model.to(on), max_image_side=max_image_side, preprocess=preprocess)
        backend.adapter = None if adapter is None else str(adapter)
        if quantize == "fp8":
            if not fp8_supported(on):
                raise RuntimeError(
                    f"model.quantize = 'fp8' needs a GPU with FP8 tensor cores (Ada/Hopper); {on} has none"
                )
            log.info("quantised %d linear layers of %s to fp8", quantize_fp8(model), model_id)
        log.info("model %s loaded in %.1f s", model_id, time.monotonic() - started)
        return backend

    def __init__(
        self, name: str, processor: Any, model: Any, *, max_image_side: int = 1280, preprocess: str = "auto"
    ) -> None:
        self.name = name
        parameter = next(model.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        self.torch_processor = None
        self.max_image_side = max_image_side
        self.share_images = True
        # One batch on the model at a time (it keeps per-call state, e.g. RoPE deltas); image processing
        # of the next batch runs outside this lock, in another queue worker, meanwhile.
        self.model_lock = threading.Lock()
        self.processor = processor
        tokenizer = self.processor.tokenizer
        pad_left(tokenizer)
        self.model: Any = model.eval()
        fused = fuse_rms_norms(model) + linear_patch_embeddings(model)  # same function, fewer kernels
        log.debug("%s: %d modules swapped for fused kernels", self.name, fused)
        self.style = prompt_style(self.processor)
        self.yes_ids = single_token_ids(tokenizer, YES_VARIANTS)
        self.no_ids = single_token_ids(tokenizer, NO_VARIANTS)
        if not self.yes_ids or not self.no_ids:
            raise ValueError(f"{self.name}: the tokenizer has no single-token 'yes'/'no'; yes/no scoring needs them")
        self._rendered: dict[tuple[str, int], str] = {}
        # Image preprocessing in torch on the model's device (vlm/torch_images.py): "auto" on CUDA.
        if preprocess == "torch" or (preprocess == "auto" and self.device.type == "cuda"):
            self.torch_processor = with_torch_images(
                processor, device=self.device, dtype=self.dtype, max_image_side=self.max_image_side
            )
            if self.torch_processor is None:
                log.info("%s: its image processor has no torch equivalent here; preprocessing on the CPU", self.name)

    @property
    def max_image_side(self) -> int:
        return self._max_image_side

    @max_image_side.setter
    def max_image_side(self, side: int) -> None:
        self._max_image_side = side
        if getattr(self, "torch_processor", None) is not None:
            self.torch_processor.image_processor.max_image_side = side  # type: ignore[union-attr]

    def prompt_limits(self, *, max_chars: int, max_tokens: int, max_new_tokens: int) -> PromptLimits:
        """Questions counted in this model's tokens, within its context (inference/limits.py)."""
        return token_limits(
            self.processor.tokenizer,
            self.model.config,
            model=self.name,
            max_chars=max_chars,
            max_tokens=max_tokens,
            max_image_side=self.max_image_side,
            max_new_tokens=max_new_tokens,
        )

    def prompt_text(self, question: str, images: int = 1) -> str:
        """The question as the model sees it: its chat template around the image(s) and the question."""
        text = self._rendered.get((question, images))
        if text is None:
            if len(self._rendered) >= RENDERED_CACHE:  # questions are few; API questions could be many
                self._rendered.clear()
            text = self._rendered[(question, images)] = self.style.render(self.processor, question, images)
        return text

    def yes_no_inputs(self, prompts: Sequence[Prompt], *, positions: bool = False) -> Any:
        """Model inputs of a one-pass yes/no batch (the answer opened after each question)."""
        return self._inputs(prompts, self.style.answer_prefix, positions=positions)

    def _inputs(self, prompts: Sequence[Prompt], suffix: str = "", *, positions: bool = False) -> Any:
        texts = [self.prompt_text(p.question, len(p.images)) + suffix for p in prompts]
        return self.encode([image for p in prompts for image in p.images], texts, positions=positions)

    def encode(
        self, images: Sequence[Any], texts: Sequence[str], processor: Any = None, *, positions: bool = False
    ) -> Any:
        """Model inputs on the model's device (`images`: every prompt's images, in order, one flat list):
        images through the torch preprocessing where enabled (resized once, on the device), else downscaled
        here and through the checkpoint's processor. `processor` overrides the configured choice
        (benchmarks compare both). `positions`: also the multimodal RoPE position ids, computed here on the
        CPU (positions.py) instead of in the forward pass; for single passes only (`generate` keeps the
        model's own bookkeeping)."""
        processor = processor or self.torch_processor or self.processor
        if not isinstance(processor.image_processor, TorchImages):
            images = [fit_longest_side(image, self.max_image_side) for image in images]
        inputs = processor(images=list(images), text=list(texts), return_tensors="pt", padding=True)
        length, context = inputs["input_ids"].shape[1], context_tokens(self.model.config)
        if context is not None and length > context:  # the limits keep questions shorter; never send one past it
            raise ValueError(f"a prompt of {length} tokens does not fit the model's context of {context}")
        if positions:
            add_positions(self.model, inputs)
        inputs = inputs.to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        return inputs

    @torch.inference_mode()
    def score_yes_no(self, prompts: Sequence[Prompt]) -> list[YesNo]:
        """P(yes) per prompt. Prompts that share an image (several rules on one frame) share one pass over
        it (inference/backends/shared_image.py); otherwise one plain batched pass."""
        logits = None
        if self.share_images and len(group_by_image(prompts)) < len(prompts):
            texts = [self.prompt_text(p.question, len(p.images)) + self.style.answer_prefix for p in prompts]
            logits = last_token_logits(self, prompts, texts)
        if logits is None:
            inputs = self.yes_no_inputs(prompts, positions=True)  # CPU work, outside the lock
            with self.model_lock:
                logits = self.model(**inputs, logits_to_keep=1, use_cache=False).logits[:, -1, :]
                return self.p_yes(logits.float())
        return self.p_yes(logits.float())

    def p_yes(self, logits: torch.Tensor) -> list[YesNo]:
        """P(yes) from the answer position's logits: softmax over the yes and no token variants."""
        log_yes = torch.logsumexp(logits[:, self.yes_ids], dim=-1)
        log_no = torch.logsumexp(logits[:, self.no_ids], dim=-1)
        p_yes = torch.sigmoid(log_yes - log_no)  # softmax over {yes, no}
        return [YesNo(float(p)) for p in p_yes.cpu()]

    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int) -> list[str]:
        return [text for text, _count in self.generate_counted(prompts, max_new_tokens)]

    @torch.inference_mode()
    def generate_counted(self, prompts: Sequence[Prompt], max_new_tokens: int) -> list[tuple[str, int | None]]:
        """Each answer with the tokens generated for it: up to and including its end-of-sequence token
        (the rest of a row is padding, while longer answers of the batch went on)."""
        inputs = self._inputs(prompts)
        tokenizer = self.processor.tokenizer
        with self.model_lock:
            output = self.model.generate(
                **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        eos = self.model.generation_config.eos_token_id
        width = new_tokens.shape[1]
        counts = [width] * len(texts)
        if eos is not None:
            stops = torch.tensor(eos if isinstance(eos, list) else [eos], device=new_tokens.device)
            ends = torch.isin(new_tokens, stops).cpu()
            counts = [int(row.nonzero()[0]) + 1 if row.any() else width for row in ends]
        return [(clean_answer(t), n) for t, n in zip(texts, counts, strict=True)]

    def prompt_tokens(self, prompt: Prompt, yes_no: bool) -> int:
        """The prompt's tokens as the model gets them, its images' tokens included (the processor's
        count, on the CPU)."""
        suffix = self.style.answer_prefix if yes_no else ""
        images = [fit_longest_side(image, self.max_image_side) for image in prompt.images]
        text = self.prompt_text(prompt.question, len(images)) + suffix
        return int(self.processor(images=images, text=[text], return_tensors="pt")["input_ids"].shape[1])

    def close(self) -> None:
        del self.model
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
