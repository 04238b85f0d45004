"""A tiny random Llama-architecture model and byte-level BPE tokenizer, made in process.

Tests and the CI-fast local cloud use it instead of downloading anything: same architecture,
same chat template style (ChatML), a few hundred kilobytes, random weights.
"""

from __future__ import annotations

from pathlib import Path

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome. Hello there, how are you today?",
    "Stratus serves language models to many tenants and bills every token exactly once.",
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen",
    "the quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun",
] * 8


def build_tiny_model(directory: Path, seed: int = 0, vocab_size: int = 512) -> Path:
    """Write a tiny random LlamaForCausalLM and its tokenizer to `directory` (fp32)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(CORPUS, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=bpe,
        bos_token="<|im_start|>",  # noqa: S106 - special tokens, not secrets
        eos_token="<|im_end|>",  # noqa: S106
        pad_token="<|endoftext|>",  # noqa: S106
    )
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(directory)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=-(-len(tokenizer) // 16) * 16,  # padded to a multiple of 16, as real models are
        hidden_size=128,  # head_dim 32: vLLM's CPU attention has no kernel for 16
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,  # room for a prompt that lists tools (a byte-level vocabulary of 512)
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(directory)
    return directory
