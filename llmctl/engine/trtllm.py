"""The one module that knows the TensorRT-LLM tool chain (STYLE.md: one seam per external tool).

It turns a ``BuildSpec`` into the exact command lines (checkpoint conversion with
``convert_checkpoint.py``, or ``quantize.py`` for fp8 / int4_awq; then ``trtllm-build``), runs them
with their output in a log and progress through a callback, and validates the result by loading
the engine and generating a few tokens in a separate process (the runtime keeps GPU and MPI state
that must not leak into llmctl).

``tensorrt_llm`` is never imported here: its presence is detected from package metadata, so a
machine without a GPU can still print every step (``--dry-run``) or emit a Kubernetes Job.

Where the example scripts live: ``$LLMCTL_TRTLLM_EXAMPLES`` (default ``/app/tensorrt_llm/examples``,
the TensorRT-LLM source tree's ``examples`` folder as shipped in NVIDIA's Triton TRT-LLM images).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llmctl.engine.spec import BuildSpec
from llmctl.errors import BuildError

ENV_EXAMPLES = "LLMCTL_TRTLLM_EXAMPLES"
DEFAULT_EXAMPLES = "/app/tensorrt_llm/examples"
# Files a build needs from a Hugging Face repository (weights as safetensors, config, tokenizer).
ALLOW_PATTERNS = (
    "*.json",
    "*.safetensors",
    "tokenizer*",
    "*.model",
    "*.tiktoken",
    "merges.txt",
    "vocab.*",
)
TOKENIZER_FILES = (
    "tokenizer*",
    "special_tokens_map.json",
    "*.model",
    "*.tiktoken",
    "merges.txt",
    "vocab.*",
    "config.json",
    "generation_config.json",
)
# Model family (prefix of the planner's architecture name, lower case) -> examples sub-folder.
CONVERT_FAMILY = {
    "llama": "llama",
    "mistral": "llama",
    "mixtral": "llama",
    "smollm": "llama",
    "qwen": "qwen",
}
CALIB_SIZE = {"fp8": 512, "int4_awq": 32}
VALIDATE_TOKENS = 8

ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class Step:
    name: str  # "download" | "convert" | "quantize" | "build" | "validate"
    argv: tuple[str, ...]
    description: str

    def shell(self) -> str:
        return shlex.join(self.argv)

    def display(self) -> str:
        """``shell()`` for people: the inline validation script is named, not printed."""
        return shlex.join(SCRIPT_LABELS.get(a, a) for a in self.argv)


def available() -> str | None:
    """The installed TensorRT-LLM release, or None (detected without importing it)."""
    if importlib.util.find_spec("tensorrt_llm") is None:
        return None
    for dist in ("tensorrt_llm", "tensorrt-llm"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def examples_dir() -> Path:
    return Path(os.environ.get(ENV_EXAMPLES) or DEFAULT_EXAMPLES)


def convert_script(spec: BuildSpec, examples: Path) -> Path:
    name = (spec.architecture or spec.model_id.rsplit("/", 1)[-1]).lower()
    family = next((f for prefix, f in CONVERT_FAMILY.items() if name.startswith(prefix)), None)
    if family is None:
        raise BuildError(
            f"{spec.model_id}: no TensorRT-LLM checkpoint converter known for {name!r} (known: {', '.join(CONVERT_FAMILY)})"
        )
    newer = (
        examples / "models" / "core" / family / "convert_checkpoint.py"
    )  # layout of 0.17 and later
    return newer if newer.is_file() else examples / family / "convert_checkpoint.py"


def download_step(spec: BuildSpec, local_dir: str | None) -> Step | None:
    """The fetch as a command line; without ``local_dir`` it fills the huggingface-hub cache."""
    if spec.checkpoint.source != "hf":
        return None
    argv = [
        "huggingface-cli",
        "download",
        spec.checkpoint.ref,
        "--revision",
        str(spec.checkpoint.revision),
    ]
    argv += ["--include", *ALLOW_PATTERNS]
    if local_dir:
        argv += ["--local-dir", local_dir]
    return Step(
        "download",
        tuple(argv),
        f"fetch {spec.checkpoint.ref}@{str(spec.checkpoint.revision)[:12]} (only the files a build needs)",
    )


def steps(
    spec: BuildSpec,
    checkpoint_dir: str,
    work_dir: str,
    out_dir: str,
    *,
    python: str = "python3",
    examples: Path | None = None,
) -> list[Step]:
    """The exact commands that build ``spec``: conversion or quantisation, then trtllm-build."""
    examples = examples or examples_dir()
    ckpt = f"{work_dir}/checkpoint"
    engine = f"{out_dir}/engine"
    par = ["--tp_size", str(spec.tp), "--pp_size", str(spec.pp)]
    out: list[Step] = []
    if spec.quantization in ("fp8", "int4_awq"):
        argv = [
            python,
            str(examples / "quantization" / "quantize.py"),
            "--model_dir",
            checkpoint_dir,
        ]
        argv += ["--output_dir", ckpt, "--dtype", spec.dtype, "--qformat", spec.quantization]
        if spec.kv_cache_dtype == "fp8":
            argv += ["--kv_cache_dtype", "fp8"]
        if spec.quantization == "int4_awq":
            argv += ["--awq_block_size", "128"]
        argv += ["--calib_size", str(CALIB_SIZE[spec.quantization]), *par]
        out.append(
            Step(
                "quantize",
                tuple(argv),
                f"quantise to {spec.quantization} (calibration on the default dataset)",
            )
        )
    else:
        argv = [python, str(convert_script(spec, examples)), "--model_dir", checkpoint_dir]
        argv += ["--output_dir", ckpt, "--dtype", spec.dtype, *par]
        if spec.quantization == "int8_wo":
            argv += ["--use_weight_only", "--weight_only_precision", "int8"]
        out.append(
            Step(
                "convert",
                tuple(argv),
                f"convert the checkpoint to TensorRT-LLM format ({spec.dtype})",
            )
        )

    def onoff(flag: bool) -> str:
        return "enable" if flag else "disable"

    p = spec.plugins
    build = ["trtllm-build", "--checkpoint_dir", ckpt, "--output_dir", engine]
    build += [
        "--max_batch_size",
        str(spec.max_batch_size),
        "--max_input_len",
        str(spec.max_input_len),
    ]
    build += ["--max_seq_len", str(spec.max_seq_len), "--max_num_tokens", str(spec.max_num_tokens)]
    build += ["--max_beam_width", str(spec.max_beam_width)]
    build += ["--kv_cache_type", "paged" if spec.paged_kv_cache else "continuous"]
    build += ["--gpt_attention_plugin", p.gpt_attention_plugin, "--gemm_plugin", p.gemm_plugin]
    build += [
        "--context_fmha",
        onoff(p.context_fmha),
        "--use_paged_context_fmha",
        onoff(p.use_paged_context_fmha),
    ]
    build += [
        "--remove_input_padding",
        onoff(p.remove_input_padding),
        "--multiple_profiles",
        onoff(p.multiple_profiles),
    ]
    build += ["--workers", str(spec.world_size)]
    out.append(
        Step(
            "build",
            tuple(build),
            f"build the engine for {spec.gpu} ({spec.gpu_arch}), TP {spec.tp} x PP {spec.pp}",
        )
    )
    return out


def validate_step(
    spec: BuildSpec, engine_dir: str, tokenizer_dir: str, *, python: str = "python3"
) -> Step:
    argv = [python, "-c", VALIDATE_SCRIPT, engine_dir, tokenizer_dir, str(VALIDATE_TOKENS)]
    if spec.world_size > 1:
        argv = ["mpirun", "-n", str(spec.world_size), "--allow-run-as-root", *argv]
    return Step("validate", tuple(argv), f"load the engine and generate {VALIDATE_TOKENS} tokens")


VALIDATE_SCRIPT = textwrap.dedent(
    """
    import sys
    from tensorrt_llm.runtime import ModelRunner
    from transformers import AutoTokenizer
    engine_dir, tokenizer_dir, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    runner = ModelRunner.from_dir(engine_dir=engine_dir)
    ids = tok("The capital of France is", return_tensors="pt").input_ids.int()
    end_id = tok.eos_token_id if tok.eos_token_id is not None else 0
    out = runner.generate([ids[0]], max_new_tokens=n, end_id=end_id, pad_id=end_id)
    new = out[0][0][ids.shape[1]:].tolist()
    if runner.mapping.rank == 0:
        print("llmctl-validate: generated", len(new), "tokens:", repr(tok.decode(new)))
    if not new:
        sys.exit("no tokens generated")
    """
)


def run_step(step: Step, log: Path, on_progress: ProgressFn) -> None:
    """Run one command, appending its output to ``log``; a failure names the step and the log."""
    on_progress(f"{step.name}: {step.description}")
    with open(log, "a") as fh:
        fh.write(f"\n$ {step.shell()}\n")
        fh.flush()
        try:
            proc = subprocess.Popen(
                step.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        except OSError as exc:
            raise BuildError(f"{step.name}: cannot run {step.argv[0]}: {exc}") from None
        last = ""
        assert proc.stdout is not None
        for line in proc.stdout:
            fh.write(line)
            if line.strip():
                last = line.strip()
                on_progress(f"{step.name}: {last[:120]}")
        rc = proc.wait()
    if rc != 0:
        raise BuildError(f"{step.name} failed (exit {rc}): {last[:200]} (full log: {log})")


def fetch_checkpoint(spec: BuildSpec, on_progress: ProgressFn) -> Path:
    """The checkpoint folder: the local path, or the HF snapshot (cache first, then only needed files)."""
    if spec.checkpoint.source == "local":
        return Path(spec.checkpoint.ref)
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise BuildError("huggingface-hub is not installed: pip install huggingface-hub") from None
    kw = {
        "repo_id": spec.checkpoint.ref,
        "revision": spec.checkpoint.revision,
        "allow_patterns": list(ALLOW_PATTERNS),
    }
    try:
        return Path(snapshot_download(local_files_only=True, **kw))
    except Exception:  # not (fully) cached: fetch what is missing
        on_progress(f"download: {spec.checkpoint.ref}@{str(spec.checkpoint.revision)[:12]}")
    try:
        return Path(snapshot_download(**kw))
    except Exception as exc:
        raise BuildError(
            f"cannot fetch {spec.checkpoint.ref}@{spec.checkpoint.revision}: {exc} "
            "(log in with `huggingface-cli login` for gated models, or set model.id to a local folder)"
        ) from None


def copy_tokenizer(checkpoint: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    copied = 0
    for pattern in TOKENIZER_FILES:
        for src in checkpoint.glob(pattern):
            if src.is_file():
                shutil.copyfile(src, dest / src.name)
                copied += 1
    if not any(dest.glob("tokenizer*")):
        raise BuildError(
            f"{checkpoint}: no tokenizer files (tokenizer.json / tokenizer_config.json)"
        )


def make_builder(spec: BuildSpec, *, validate: bool = True) -> Callable[[Path, ProgressFn], None]:
    """The real builder for ``EngineCache.ensure``: fetch, convert/quantise, build, validate."""
    if available() is None:
        raise BuildError("tensorrt_llm is not installed here")

    def build(out_dir: Path, on_progress: ProgressFn) -> None:
        work = out_dir.with_name(out_dir.name + ".work")  # beside it: cleaned up with leftovers
        work.mkdir(parents=True, exist_ok=True)
        log = out_dir / "build.log"
        try:
            checkpoint = fetch_checkpoint(spec, on_progress)
            copy_tokenizer(checkpoint, out_dir / "tokenizer")
            for step in steps(
                spec, str(checkpoint), str(work), str(out_dir), python=sys.executable
            ):
                run_step(step, log, on_progress)
            if validate:
                check = validate_step(
                    spec, str(out_dir / "engine"), str(out_dir / "tokenizer"), python=sys.executable
                )
                run_step(check, log, on_progress)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    return build


# Inline scripts -> how ``Step.display`` names them (other step builders add theirs).
SCRIPT_LABELS: dict[str, str] = {VALIDATE_SCRIPT: "<llmctl validation script>"}
