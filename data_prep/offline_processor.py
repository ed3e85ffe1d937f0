"""A tiny Qwen2.5-VL-style tokenizer and processor, built fully offline in a few seconds.

No hub access, no torchvision, no model files: a byte-level BPE is trained with `tokenizers` on
strings defined in this module (plus our prompt templates), wrapped in a `PreTrainedTokenizerFast`
with the Qwen special tokens and a Qwen-style chat template, and combined with transformers'
PIL image processor (`Qwen2VLImageProcessorPil`) into a `Qwen2_5_VLProcessor`.

What it is good for: counting prompt tokens with image tokens expanded exactly as the real
processor expands them (`<|image_pad|>` repeated grid_h*grid_w/merge² times), and feeding verl's
`RLHFDataset` in tests. What it is not: a real Qwen vocabulary. English text tokenizes to roughly
one token per word (as with Qwen's 150k vocabulary), because the BPE is trained on text that
contains the words our prompts use; numbers split into single digits like Qwen's pre-tokenizer.

Used by `data_prep.inspect` (shared-prefix ratio) and by the tests (they import it directly).
"""

from __future__ import annotations

from functools import lru_cache

QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>",
    "<|quad_start|>", "<|quad_end|>",
    "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)

# Qwen2's pre-tokenizer split (letters, single digits, punctuation runs, newlines, spaces).
_QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# A Qwen-style chat template: default system turn when none is given, one
# <|vision_start|><|image_pad|><|vision_end|> per image item, text items verbatim.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_GENERIC_TEXT = (
    "The quick brown fox jumps over the lazy dog. What is the colour of the object in the image? "
    "How many people are standing near the red car on the left side of the street? "
    "Is the cup to the left of the laptop? Which of the following options is correct? "
    "The answer is yes. The answer is no. There are three birds and two trees in the picture. "
    "Find the value of x in the triangle. The area of the circle is equal to pi times the radius squared. "
    "Look at the sign above the door and read the text written on it. "
    "A person is holding an umbrella while walking a dog in the park at night. "
    "Options: A. red B. green C. blue D. yellow. Answer with the letter of the correct option. "
    "What shape is the green object? The square is above the triangle and below the circle. "
    "Describe the scene, then reason step by step and give a short final answer. "
)


def _training_corpus() -> list[str]:
    from data_prep import prompts

    texts = [_GENERIC_TEXT, prompts.SYSTEM_PROMPT, prompts.SINGLE_INSTRUCTION, prompts.TEXTUAL_INSTRUCTION]
    texts += list(prompts.GROUNDED_INSTRUCTIONS.values())
    return texts * 4


@lru_cache(maxsize=1)
def build_tokenizer(vocab_size: int = 1200):
    """A `PreTrainedTokenizerFast` with Qwen special tokens and the Qwen-style chat template.

    eos = `<|im_end|>`, pad = `<|endoftext|>`; cached per process.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_QWEN_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(QWEN_SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_training_corpus(), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   chat_template=CHAT_TEMPLATE)


@lru_cache(maxsize=1)
def _video_processor_class():
    from transformers import BaseVideoProcessor
    from transformers.utils import PushToHubMixin

    class NoVideoProcessor(BaseVideoProcessor, PushToHubMixin):
        """Placeholder: without torchvision transformers' video processors are dummies, and
        `Qwen2_5_VLProcessor` only checks the type. Images only; never called for videos here.
        Serializes to an empty dict so the processor's repr/to_dict work."""

        _auto_class = None

        def __init__(self, **kwargs):  # noqa: D107 - deliberately does nothing
            pass

        def to_dict(self) -> dict:
            return {}

    return NoVideoProcessor


def image_only_video_processor():
    """An instance of the image-only video processor (see `_video_processor_class`)."""
    return _video_processor_class()()


@lru_cache(maxsize=8)
def build_processor(min_pixels: int = 56 * 56, max_pixels: int = 1280 * 28 * 28, patch_size: int = 14):
    """A `Qwen2_5_VLProcessor` over the offline tokenizer and the PIL image processor.

    `min_pixels`/`max_pixels` bound the smart-resize of every image (pixels of the resized image);
    `patch_size` 14 with merge 2 gives Qwen2.5-VL's factor 28. Cached per argument tuple.
    """
    from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    image_processor = Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels, patch_size=patch_size)
    return Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=build_tokenizer(),
                               video_processor=image_only_video_processor(), chat_template=CHAT_TEMPLATE)
