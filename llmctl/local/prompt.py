"""Chat messages -> the prompt string the LLM model (``tensorrt_llm``) receives as ``text_input``.

TensorRT-LLM's LLM-API model takes a fully formatted prompt and so does the local stand-in: formatting
is the caller's job (the gateway), never the model's, so one prompt behaves the same on every
target. For the local GGUF the template is the one stored in the file
(``tokenizer.chat_template``, read without loading the weights); ChatML is the fallback because
SmolLM2 and most small instruct models use it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@lru_cache(maxsize=8)
def gguf_chat_template(path: str) -> str | None:
    """The chat template stored in a GGUF file, or None (reads metadata only, no weights)."""
    try:
        from llama_cpp import Llama

        # llama.cpp writes warnings to file descriptor 2 itself, whatever verbose says; an
        # operator running `llmctl up` should not see "n_ctx_train (0)" for a metadata read.
        with _quiet_fd2():
            llm = Llama(model_path=path, vocab_only=True, verbose=False)
            template = llm.metadata.get("tokenizer.chat_template")
            llm.close()
        return template or None
    except Exception:
        return None


@contextlib.contextmanager
def _quiet_fd2() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def format_chat(
    messages: Sequence[Mapping[str, str]],
    template: str | None = None,
    *,
    add_generation_prompt: bool = True,
) -> str:
    """Render ``[{"role": ..., "content": ...}]`` with a Hugging Face style Jinja template."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template or CHATML).render(
        messages=[dict(m) for m in messages],
        add_generation_prompt=add_generation_prompt,
        bos_token="",
        eos_token="",
    )
