"""The examples run and learn (small versions of the README's main job)."""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "..", "examples")
sys.path.insert(0, EXAMPLES)


def test_train_mlp_reaches_95_percent_on_digits():
    import train_mlp
    accuracy = train_mlp.main(epochs=20, quiet=True, ir=None)
    assert accuracy >= 0.95, accuracy


def test_dropout_mlp_learns_digits():
    import dropout_mlp
    assert dropout_mlp.main(epochs=12, quiet=True) >= 0.93


def test_logistic_regression_learns_digits():
    import logistic_regression
    assert logistic_regression.main(steps=150, quiet=True) >= 0.93


def test_train_mlp_script_prints_ir_and_progress():
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, "train_mlp.py"), "--epochs", "2"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "func.func @train_step" in out and "ik.log_softmax" in out   # the IR after autodiff
    assert "ikad." not in out                                          # derivatives were taken
    assert "epoch   2" in out and "examples/s" in out and "test accuracy" in out


def test_quickstart_runs():
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, "quickstart.py")], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "irkit matches numpy." in proc.stdout


def test_rnn_language_model_learns_with_bptt():
    import rnn_lm
    first, last = rnn_lm.main(epochs=12, hidden=32, quiet=True)
    assert last < first - 0.4, (first, last)


def test_hessian_free_training_with_rop_through_scan():
    import hessian_free
    first, last = hessian_free.main(iterations=4, quiet=True)
    assert last < first / 5, (first, last)


def test_torch_mlp_compiled_with_irkit_matches_eager_pytorch():
    pytest.importorskip("torch", reason="torch not installed")
    import torch_mlp
    result = torch_mlp.main(steps=25, quiet=True)
    assert result["prediction_diff"] < 1e-4, result
    assert result["loss_diff"] < 1e-5, result
    assert result["accuracy"] > 0.6, result
