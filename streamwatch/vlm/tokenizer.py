"""A small byte-level BPE tokenizer made locally, for offline test and demo models.

Byte-level BPE (like GLM-4's and Qwen's own tokenizers) can encode any text; training it on a short
English corpus of monitoring questions keeps common words, and the yes/no answers, single tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

_CORPUS = """
Is any person climbing the fence? Answer yes or no.
Is there a person in the restricted zone near the gate? Answer yes or no.
Is a vehicle stopped at the gate? Is the fire exit blocked by boxes or pallets?
How many people are visible? Answer with a number. How many boxes are on the shelf?
Is any box fallen or tilted on the floor? Is a forklift blocking the aisle?
Is any worker without a helmet or a high visibility vest? Is a screw missing from the board?
Is there a solder bridge between two pads? Is there a scratch or dent on the housing?
Is the label missing or wrong? Is a foreign object lying on the circuit board?
Describe the scene in one short sentence. What colour is the car? Which zone is the person in?
Yes. No. yes no Yes No YES NO true false none one two three four five six seven eight nine ten
0 1 2 3 4 5 6 7 8 9 10 11 12 person people vehicle truck car fence gate shelf pallet camera
"""

YES_NO_WORDS = ("Yes", "yes", " Yes", " yes", "YES", "No", "no", " No", " no", "NO")


def build_tokenizer(
    special_tokens: Sequence[str],
    *,
    eos_token: str,
    pad_token: str,
    chat_template: str,
    vocab_size: int = 1024,
    extra_text: Iterable[str] = (),
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer; special tokens get the lowest ids in the given order."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = [*_CORPUS.strip().splitlines(), *extra_text]
    # Repetition makes the answer words frequent enough to become single tokens.
    tokenizer.train_from_iterator([*lines, *(list(YES_NO_WORDS) * 50)], trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=eos_token,
        pad_token=pad_token,
        padding_side="left",
        additional_special_tokens=[t for t in special_tokens if t not in (eos_token, pad_token)],
    )
    fast.chat_template = chat_template
    return fast
