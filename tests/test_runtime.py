"""What the runtime says when an interpreter cannot run a bundle."""

import pytest

from binbot.device import runtime
from binbot.errors import BinbotError


def test_tflite_runtime_that_lacks_an_op_says_to_install_ai_edge_litert(monkeypatch):
    class OldInterpreter:  # behaves as tflite-runtime does on a model with a newer op version
        def __init__(self, **options):
            raise ValueError("Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'")

    OldInterpreter.__module__ = "tflite_runtime.interpreter"
    monkeypatch.setattr(runtime, "interpreter_class", lambda: OldInterpreter)

    with pytest.raises(BinbotError, match=r"model.tflite: not a TFLite model this runtime can run \(Didn't find op .*"
                       r"tflite-runtime lacks the newer op versions bundles may need: pip install ai-edge-litert\)"):
        runtime.load_interpreter(b"model", name="model.tflite")


def test_other_runtimes_report_the_reason_without_that_advice(monkeypatch):
    class Interpreter:
        def __init__(self, **options):
            raise ValueError("Model provided has model identifier 'junk'")

    monkeypatch.setattr(runtime, "interpreter_class", lambda: Interpreter)
    with pytest.raises(BinbotError) as error:
        runtime.load_interpreter(b"junk", name="m.tflite")
    assert "model identifier" in str(error.value) and "tflite-runtime" not in str(error.value)
