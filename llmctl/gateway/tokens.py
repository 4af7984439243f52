"""Counting the served model's tokens, so the prompt is sized in what the context is made of.

Why real tokens: sizing the prompt at a fixed number of characters a token only holds for Latin
text. A non-Latin question breaks it (1,950 emoji are 5,850 SmolLM2 tokens, not 650), and the
prompt overflows the model's context. So the gateway counts with the served model's own
tokenizer where it has one, and otherwise with a bound that cannot be exceeded by that much:

- ``LlamaCppCounter``: the vocabulary of a GGUF file, read by llama.cpp without the weights
  (what the local stack serves);
- ``HFTokenizerCounter``: a Hugging Face ``tokenizer.json`` (what a TensorRT-LLM engine's
  checkpoint ships);
- ``FallbackCounter``: no tokenizer configured; see its docstring for the bound.

``load_token_counter`` picks one by path. It is called once when the gateway starts, and a
tokenizer that cannot be loaded stops the start with one line (``TokenizerError``), because a
gateway that silently fell back would size prompts for a different model than it serves.
"""

from __future__ import annotations

import math
import os
import re
import threading
from pathlib import Path
from typing import Any, Protocol

from llmctl.errors import LlmctlError

# A code point UTF-8 cannot encode; only an unpaired escape in some source text could carry one.
_SURROGATE = re.compile("[\ud800-\udfff]")
_ASCII = bytes(range(128))


class TokenizerError(LlmctlError):
    """The configured tokenizer cannot be loaded (missing file, wrong format, missing package)."""


class TokenCounter(Protocol):
    """How many tokens the served model makes of ``text`` (no BOS/EOS added)."""

    def count(self, text: str) -> int: ...


def _utf8(text: str) -> str:
    """``text`` as valid Unicode: a lone surrogate becomes U+FFFD rather than an exception (or a
    crash inside a C tokenizer) while counting."""
    if _SURROGATE.search(text) is None:
        return text
    return _SURROGATE.sub("\ufffd", text)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class FallbackCounter:
    """An upper bound for byte-level BPE and SentencePiece-with-byte-fallback tokenizers, used
    when the gateway is given no tokenizer.

    The count is ``ceil(ascii_chars / chars_per_token)`` plus one token per UTF-8 byte of every
    non-ASCII character. Why that bounds the real count:

    - non-ASCII text: a byte-level BPE (GPT-2, Llama 3, SmolLM2) starts from one token per byte
      and merges only ever reduce the number, so it never makes more tokens than bytes; a
      SentencePiece model with byte fallback (Llama 2, Mistral) emits a known character as one
      piece (at most its bytes) and an unknown one as one token per byte. One token per byte is
      therefore never exceeded, and that is what the character estimate got wrong by a factor of
      three to nine (a CJK character is 3 bytes, an emoji 4);
    - ASCII text keeps the configured ``chars_per_token`` (3 by default; English averages about
      4 characters a token in these vocabularies). This part is a pessimistic estimate, not a
      strict bound: pathological ASCII (one letter between spaces) can do worse, but prose, code
      and the gateway's own instructions do not.

    The special tokens of a chat template (``<|im_start|>``) count as their characters, several
    tokens for what the model reads as one: an over-estimate, which is the safe side.
    """

    def __init__(self, chars_per_token: float = 3.0) -> None:
        if chars_per_token <= 0:
            raise TokenizerError(f"chars_per_token must be positive, not {chars_per_token}")
        self.chars_per_token = float(chars_per_token)

    def count(self, text: str) -> int:
        if text.isascii():
            return math.ceil(len(text) / self.chars_per_token)
        data = text.encode("utf-8", "surrogatepass")
        non_ascii = len(data.translate(None, _ASCII))  # the bytes of non-ASCII characters
        return math.ceil((len(data) - non_ascii) / self.chars_per_token) + non_ascii

    def __repr__(self) -> str:
        return f"FallbackCounter(chars_per_token={self.chars_per_token:g})"


class LlamaCppCounter:
    """The tokenizer stored in a GGUF file, as llama.cpp (the local stack's server) applies it.

    ``vocab_only`` loads the vocabulary and metadata, not the weights (0.1 s for SmolLM2), once
    per gateway. Special tokens in the text (the chat template's ``<|im_start|>``) are
    parsed as such (``special=True``), as the server parses the prompt it is sent. Calls are
    serialised: the gateway counts on its event loop, but benchmarks and tests may use threads.
    """

    def __init__(self, gguf: str | os.PathLike[str]) -> None:
        path = Path(gguf)
        if not path.is_file():
            raise TokenizerError(f"tokenizer: GGUF file {path} not found")
        try:
            import llama_cpp
        except ImportError:
            raise TokenizerError(
                f"tokenizer: {path} needs llama-cpp-python (part of llmctl[local])"
            ) from None
        from llmctl.local.prompt import _quiet_fd2

        try:
            # llama.cpp writes load warnings to fd 2 whatever verbose says; keep the log clean.
            with _quiet_fd2():
                self._llama: Any = llama_cpp.Llama(
                    model_path=str(path), vocab_only=True, verbose=False
                )
        except Exception as exc:
            raise TokenizerError(
                f"tokenizer: cannot read {path} with llama.cpp ({_one_line(exc)})"
            ) from None
        self.path = path
        self._lock = threading.Lock()

    def count(self, text: str) -> int:
        data = _utf8(text).encode("utf-8")
        with self._lock:
            return len(self._llama.tokenize(data, add_bos=False, special=True))

    def __repr__(self) -> str:
        return f"LlamaCppCounter({str(self.path)!r})"


class HFTokenizerCounter:
    """A Hugging Face ``tokenizer.json`` through the ``tokenizers`` package.

    Truncation and padding stored in the file are switched off: an embedding model's
    ``tokenizer.json`` truncates at 128 or 512 tokens, which would make every long prompt look
    short. Added special tokens in the text count as one token each, as the server sees them.
    """

    def __init__(self, tokenizer_json: str | os.PathLike[str]) -> None:
        path = Path(tokenizer_json)
        if not path.is_file():
            raise TokenizerError(f"tokenizer: {path} not found")
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise TokenizerError(
                f"tokenizer: {path} needs the tokenizers package (pip install tokenizers)"
            ) from None
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:
            raise TokenizerError(f"tokenizer: cannot read {path} ({_one_line(exc)})") from None
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self.path = path
        self._tokenizer = tokenizer

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(_utf8(text), add_special_tokens=False).ids)

    def __repr__(self) -> str:
        return f"HFTokenizerCounter({str(self.path)!r})"


class CachedCounter:
    """Remembers the counts of texts up to ``max_chars`` long: a retrieved chunk is counted once,
    not on every request that cites it (with llama.cpp's tokenizer a 700-character source costs
    ~0.45 ms a count, so four sources were about 2 ms of each request's event-loop time).
    Bounded: the oldest entries go first once ``max_entries`` are held."""

    def __init__(self, inner: TokenCounter, max_entries: int = 8192, max_chars: int = 4096):
        self.inner = inner
        self.max_entries = max_entries
        self.max_chars = max_chars
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def count(self, text: str) -> int:
        if len(text) > self.max_chars:
            return self.inner.count(text)
        with self._lock:
            known = self._counts.get(text)
        if known is not None:
            return known
        n = self.inner.count(text)
        with self._lock:
            if len(self._counts) >= self.max_entries:
                self._counts.pop(next(iter(self._counts)))
            self._counts[text] = n
        return n


def load_token_counter(
    path: str | os.PathLike[str] | None, *, chars_per_token: float = 3.0
) -> TokenCounter:
    """The counter for ``path``: a ``*.gguf`` file → llama.cpp; a ``tokenizer.json``, or a folder
    holding one (a Hugging Face checkpoint) → tokenizers; None → ``FallbackCounter``. Anything
    else, or a file that cannot be loaded, is a one-line ``TokenizerError``."""
    if path is None:
        return FallbackCounter(chars_per_token)
    p = Path(path)
    if p.suffix.lower() == ".gguf":
        return CachedCounter(LlamaCppCounter(p))
    if p.name == "tokenizer.json":
        return CachedCounter(HFTokenizerCounter(p))
    if p.is_dir():
        if (p / "tokenizer.json").is_file():
            return CachedCounter(HFTokenizerCounter(p / "tokenizer.json"))
        raise TokenizerError(f"tokenizer: folder {p} holds no tokenizer.json")
    raise TokenizerError(
        f"tokenizer: {p} is neither a .gguf file, a tokenizer.json nor a folder holding one"
    )
