"""Tiny offline assets for tests: a ChatML BPE tokenizer and a random Qwen2 model (~100k params).

Built in about a second, with no download. The BPE uses Qwen2's split regex so that transformers'
``AutoTokenizer`` (which forces Qwen2Tokenizer for qwen2 configs) tokenizes exactly as trained.
"""

import json
from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
QWEN2_PAT = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
COLOURS = ["red", "green", "blue", "purple", "orange", "yellow", "black", "white"]
ANIMALS = ["cat", "dog", "fox", "owl", "horse", "whale", "mouse", "tiger"]


def chat_rows(n: int = 120) -> list[dict]:
    """Deterministic, learnable chat rows: sums and colour/animal descriptions."""
    rows = []
    for i in range(n):
        if i % 2 == 0:
            a, b = i % 17, (i * 7) % 13
            q, ans = f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."
        else:
            c, an = COLOURS[i % len(COLOURS)], ANIMALS[(i // 2) % len(ANIMALS)]
            q, ans = f"Describe the {c} {an}.", f"The {c} {an} is a friendly {an} that is {c}."
        rows.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": ans}]})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def build_tiny_model(out: Path, seed: int = 0) -> Path:
    """Save a tiny random Qwen2 chat model with its tokenizer into ``out``."""
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    corpus = [m["content"] for r in chat_rows(400) for m in r["messages"]]
    corpus += ["Question: Which is a fruit? Answer: apple", "A. B. C. D. true false yes no the a an of to in is"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PAT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus + [ "\n".join(corpus) ], trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None, model_max_length=512)
    fast.chat_template = CHATML_TEMPLATE
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=len(fast) + 16, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id,
                         bos_token_id=None)
    model = Qwen2ForCausalLM(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return out
