"""A real llama.cpp server for the tests: llama-cpp-python's `python -m llama_cpp.server`, on a free port,
serving a tiny llama model written here (no weights can be downloaded in CI).

The model has the llama architecture as llama.cpp loads it (GGUF, byte-level BPE vocabulary with the
ChatML tokens, a ChatML chat template) and random weights, except its output head: each token of
`REPLY` is the overwhelming next token after the one before it (the last token of ChatML's
"<|im_start|>assistant\\n" starts the sentence, and `<|im_end|>` ends it). The blocks' weights are
small, so the last token's embedding decides the next token: the answer is the same every time and
ends by itself, while the tokenizer, chat template, sampling, streaming and grammar run for real.

The server serves the file twice, as llama-cpp-python serves several models: `CHAT_MODEL` for chat, and
`EMBEDDING_MODEL` (embeddings on, mean pooling) for /v1/embeddings; it loads whichever a request names.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np

CHAT_MODEL = "tiny-llama"
EMBEDDING_MODEL = "tiny-llama-embed"
EMBEDDING_CONTEXT_TOKENS = 2048
"""Also its batch: llama-cpp-python embeds a text in one batch, and text costs about a token a byte
(the bot embeds chunks of at most 1,500 characters, queries of 2,000)."""
REPLY = "Hi there from a tiny llama."
"""What the model answers, every time (in the tokens of `REPLY_TOKENS`)."""
REPLY_TOKENS = ("Hi", "Ġthere", "Ġfrom", "Ġa", "Ġtiny", "Ġllama", ".")
"""`REPLY` in the vocabulary's byte-level spelling (Ġ is a space), one token each."""
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
EMBEDDING_LENGTH = 64
FEED_FORWARD_LENGTH = 128
HEAD_COUNT = 4
BLOCK_COUNT = 2
CONTEXT_LENGTH = 16384
"""The model's window. Its vocabulary is small, so text costs about a token a byte: the bot's nine tool
schemas and instructions alone are several thousand tokens."""
BLOCK_WEIGHT_STD = 0.02
"""Small: the blocks add little to the residual stream, which the token's own embedding dominates."""
HEAD_SCALE = 4.0
"""The reply's next token wins by at least 25 logits: at the server's default temperature (0.8), any
other token has less than a chance in 10^11."""
SEED = 18
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 10.0
READY_LINE = "Uvicorn running on"
OUTPUT_LINES_SHOWN = 200
TROUBLE = re.compile(r'Traceback|Exception|" [45]\d\d ')
"""Uvicorn logs each request as `"POST /v1/chat/completions HTTP/1.1" 200 OK`."""


def byte_level(data: bytes) -> str:
    """GPT-2's byte-to-character map: every byte is one printable character (a space is Ġ, \\n is Ċ)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    shifted = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in shifted:
            shifted[byte] = chr(256 + extra)
            extra += 1
    return "".join(shifted[byte] for byte in data)


@dataclass(frozen=True)
class TinyVocabulary:
    """Every byte as a token, the tokens of `REPLY` (with the merges that spell them), the specials."""

    tokens: list[str]
    merges: list[str]
    types: list[int]

    def id_of(self, token: str) -> int:
        return self.tokens.index(token)


def tiny_vocabulary() -> TinyVocabulary:
    tokens = [byte_level(bytes([byte])) for byte in range(256)]
    merges: list[str] = []
    for word in REPLY_TOKENS:
        for end in range(2, len(word) + 1):
            if word[:end] not in tokens:
                merges.append(f"{word[: end - 1]} {word[end - 1]}")
                tokens.append(word[:end])
    types = [gguf.TokenType.NORMAL] * len(tokens) + [gguf.TokenType.CONTROL] * len(SPECIAL_TOKENS)
    return TinyVocabulary([*tokens, *SPECIAL_TOKENS], merges, [int(t) for t in types])


def write_tiny_model(path: Path) -> TinyVocabulary:
    """Write the model (a few hundred kilobytes) to `path`; returns its vocabulary."""
    vocabulary = tiny_vocabulary()
    n_vocab = len(vocabulary.tokens)
    rng = np.random.default_rng(SEED)
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("tiny-test-llama")
    writer.add_context_length(CONTEXT_LENGTH)
    writer.add_embedding_length(EMBEDDING_LENGTH)
    writer.add_block_count(BLOCK_COUNT)
    writer.add_feed_forward_length(FEED_FORWARD_LENGTH)
    writer.add_head_count(HEAD_COUNT)
    writer.add_head_count_kv(HEAD_COUNT)
    writer.add_rope_dimension_count(EMBEDDING_LENGTH // HEAD_COUNT)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_pooling_type(gguf.PoolingType.MEAN)  # one vector per text when embedding
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(vocabulary.tokens)
    writer.add_token_types(vocabulary.types)
    writer.add_token_merges(vocabulary.merges)
    writer.add_bos_token_id(vocabulary.id_of("<|endoftext|>"))
    writer.add_eos_token_id(vocabulary.id_of("<|im_end|>"))
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML_TEMPLATE)

    def random(*shape: int, std: float = BLOCK_WEIGHT_STD) -> np.ndarray:
        return (rng.standard_normal(shape) * std).astype(np.float32)

    embeddings = random(n_vocab, EMBEDDING_LENGTH, std=1.0)
    writer.add_tensor("token_embd.weight", embeddings)
    for block in range(BLOCK_COUNT):
        prefix = f"blk.{block}"
        writer.add_tensor(f"{prefix}.attn_norm.weight", np.ones(EMBEDDING_LENGTH, np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"{prefix}.{name}.weight", random(EMBEDDING_LENGTH, EMBEDDING_LENGTH))
        writer.add_tensor(f"{prefix}.ffn_norm.weight", np.ones(EMBEDDING_LENGTH, np.float32))
        writer.add_tensor(f"{prefix}.ffn_gate.weight", random(FEED_FORWARD_LENGTH, EMBEDDING_LENGTH))
        writer.add_tensor(f"{prefix}.ffn_up.weight", random(FEED_FORWARD_LENGTH, EMBEDDING_LENGTH))
        writer.add_tensor(f"{prefix}.ffn_down.weight", random(EMBEDDING_LENGTH, FEED_FORWARD_LENGTH))
    writer.add_tensor("output_norm.weight", np.ones(EMBEDDING_LENGTH, np.float32))
    writer.add_tensor("output.weight", _reply_head(vocabulary, embeddings, rng))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return vocabulary


def _reply_head(vocabulary: TinyVocabulary, embeddings: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random rows, except that each token of the reply (and then <|im_end|>) points at the embedding
    of the token before it: the logit of "what follows X" is large exactly when X was the last token."""
    head = (rng.standard_normal(embeddings.shape) * BLOCK_WEIGHT_STD).astype(np.float32)
    units = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    chain = [byte_level(b"\n"), *REPLY_TOKENS, "<|im_end|>"]
    for before, after in itertools.pairwise(chain):
        head[vocabulary.id_of(after)] += HEAD_SCALE * units[vocabulary.id_of(before)]
    return head


@dataclass
class LlamaServer:
    """A running `python -m llama_cpp.server`; `output`: its lines so far (a few hundred per model load)."""

    base_url: str
    """Its OpenAI-compatible API, ending in /v1."""
    context_tokens: int
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)

    @property
    def log(self) -> str:
        return "\n".join(self.output[-OUTPUT_LINES_SHOWN:])

    def troubles_since(self, line_count: int) -> list[str]:
        """Lines after the first `line_count` that tell of a failure: a traceback or an HTTP 4xx/5xx."""
        return [line for line in self.output[line_count:] if TROUBLE.search(line)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _drain(server: LlamaServer, ready: threading.Event) -> None:
    """Keep the server's output (so its pipe never fills); `ready` once it listens, or once it ended."""
    assert server.process.stdout is not None
    for line in server.process.stdout:
        server.output.append(line.rstrip("\n"))
        if READY_LINE in line:
            ready.set()
    ready.set()


@contextlib.contextmanager
def running_llama_server(model: Path, *, context_tokens: int = CONTEXT_LENGTH) -> Iterator[LlamaServer]:
    """Start the server on `model` and yield it once it listens; stopped on the way out."""
    assert importlib.util.find_spec("llama_cpp") is not None, (
        "llama-cpp-python is a test dependency: pip install -e '.[test]'"
    )
    port = _free_port()
    config = model.with_suffix(".server.json")
    # No chat_format: the server formats with the model's own template, as for most GGUF models (its
    # built-in "chatml" format would leave tool results out of the prompt altogether).
    # Not verbose: llama.cpp's load report cuts the merges' list inside a UTF-8 character, which
    # llama-cpp-python's log callback cannot decode (a traceback in the log at each load, nothing worse).
    quiet = {"model": str(model), "verbose": False}
    chat = {**quiet, "model_alias": CHAT_MODEL, "n_ctx": context_tokens, "seed": SEED}
    embedding = {
        **quiet,
        "model_alias": EMBEDDING_MODEL,
        "embedding": True,
        **dict.fromkeys(("n_ctx", "n_batch", "n_ubatch"), EMBEDDING_CONTEXT_TOKENS),
    }
    config.write_text(
        json.dumps({"host": "127.0.0.1", "port": port, "models": [chat, embedding]}), encoding="utf-8"
    )
    command = [sys.executable, "-m", "llama_cpp.server", "--config_file", str(config)]
    environment = {name: value for name, value in os.environ.items() if name in ("PATH", "HOME", "LANG")}
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        env=environment,
    )
    server = LlamaServer(f"http://127.0.0.1:{port}/v1", context_tokens, process)
    ready = threading.Event()
    reader = threading.Thread(target=_drain, args=(server, ready), daemon=True)
    reader.start()
    try:
        if not ready.wait(START_TIMEOUT_S) or process.poll() is not None:
            raise RuntimeError(f"the llama.cpp server did not start:\n{server.log}")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT_S)
        reader.join(STOP_TIMEOUT_S)
