"""conformance/fixture_files.py and conformance/golden.py: the fixtures are intact, reproducible and
right (independently of the reference's backward), tampering is caught, the tolerance rule
accepts legitimate variation and rejects bugs, and the record -> --golden refactor workflow
works end to end."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conformance import contract, golden
from conformance.exact import backpropagate, output_error
from conformance.golden import FIXTURES_DIR
from conformance.reference import mlp
from tests.helpers import run_pytest
from conformance import fixture_files as fixtures

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fixture_copy(tmp_path: Path) -> Path:
    directory = tmp_path / "fixtures"
    shutil.copytree(FIXTURES_DIR, directory)
    return directory


def _rewrite(directory: Path, case_id: str, change) -> None:
    """Modify a case's arrays and re-seal its sha256, as a careful tamperer would."""
    manifest = json.loads((directory / "manifest.json").read_text())
    entry = manifest["cases"][case_id]
    arrays = golden.load_npz(directory, entry)
    change(arrays)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    (directory / entry["file"]).write_bytes(buffer.getvalue())
    entry["sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    (directory / "manifest.json").write_text(json.dumps(manifest))


def test_committed_fixtures_pass_the_check() -> None:
    assert fixtures.check(FIXTURES_DIR, log=lambda _: None) == []


def test_a_reference_changed_only_in_its_bytes_is_not_said_to_have_changed_numbers(fixture_copy: Path) -> None:
    """A fresh install said "conformance/reference/mlp.py changed since the fixtures were generated" while
    every value matched: the note now says what the check found."""
    manifest = json.loads((fixture_copy / "manifest.json").read_text())
    manifest["generated_by"]["reference_mlp_sha256"] = "0" * 64  # another file's bytes
    reseal(fixture_copy, manifest)
    said: list[str] = []
    assert fixtures.check(fixture_copy, log=said.append) == []
    [note] = [line for line in said if line.startswith("note:")]
    assert "not byte-identical" in note and "every value it computes still matches" in note
    _rewrite(fixture_copy, "f64_depth2_b16", lambda arrays: arrays["loss"].__iadd__(1.0))
    said.clear()
    assert fixtures.check(fixture_copy, log=said.append)
    [note] = [line for line in said if line.startswith("note:")]
    assert "the values below differ" in note
    manifest = json.loads((fixture_copy / "manifest.json").read_text())
    manifest["generated_by"]["reference_mlp_sha256"] = hashlib.sha256(mlp_bytes()).hexdigest()
    reseal(fixture_copy, manifest)
    said.clear()
    fixtures.check(fixture_copy, log=said.append)
    assert not [line for line in said if line.startswith("note:")]  # the same file: nothing to say


def reseal(directory: Path, manifest: dict) -> None:
    """The manifest and the SUMMARY.md that states its provenance, rewritten together."""
    (directory / "manifest.json").write_text(json.dumps(manifest))
    (directory / fixtures.SUMMARY_NAME).write_text(fixtures.summary(directory, manifest))


def mlp_bytes() -> bytes:
    return fixtures.REFERENCE_FILE.read_bytes()


def test_cli_check_passes_and_fails_with_exit_codes(fixture_copy: Path) -> None:
    ok = subprocess.run([sys.executable, "-m", "conformance.fixture_files", "check", "--dir", str(fixture_copy)],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0 and "fixture check passed" in ok.stdout, ok.stderr
    path = fixture_copy / "f64_depth2_b16.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    path.write_bytes(bytes(data))
    bad = subprocess.run([sys.executable, "-m", "conformance.fixture_files", "check", "--dir", str(fixture_copy)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1
    assert "f64_depth2_b16" in bad.stderr and "corrupted or was modified" in bad.stderr


def test_check_names_a_missing_file_and_a_stray_file(fixture_copy: Path) -> None:
    (fixture_copy / "f64_depth1_b8.npz").unlink()
    shutil.copy(fixture_copy / "f64_depth3_b1.npz", fixture_copy / "extra.npz")
    problems = "\n".join(fixtures.check(fixture_copy, log=lambda _: None))
    assert "f64_depth1_b8.npz is missing" in problems
    assert "extra.npz is not in the manifest" in problems


def test_check_reports_a_resealed_value_change_with_case_key_and_entry(fixture_copy: Path) -> None:
    def nudge(arrays):
        arrays["act2"] = arrays["act2"].copy()
        arrays["act2"][3, 1] += 1e-9
    _rewrite(fixture_copy, "f64_depth2_b16", nudge)
    problems = fixtures.check(fixture_copy, log=lambda _: None)
    assert any(p.startswith("f64_depth2_b16: act2(3, 1) is stored as") and "1 of 64 entries differ"
               in p for p in problems), problems


def test_complex_step_catches_a_wrong_golden_gradient(fixture_copy: Path) -> None:
    manifest = golden.load_manifest(fixture_copy)
    entry = manifest["cases"]["f64_depth4_b10"]
    arrays = golden.load_npz(fixture_copy, entry)
    assert fixtures.check_gradients_independently("f64_depth4_b10", entry, arrays) == []
    arrays["dW2"] = arrays["dW2"] * (1 + 1e-8)  # far below what a test would notice by eye
    problems = fixtures.check_gradients_independently("f64_depth4_b10", entry, arrays)
    assert len(problems) == 1 and "dW2" in problems[0] and "complex-step" in problems[0]


def test_complex_step_agrees_with_central_differences() -> None:
    # The second method itself, checked by a third on a smooth tiny network.
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((4, 3)), np.eye(2)[[0, 1, 1, 0]]
    params = [(rng.standard_normal((3, 2)), rng.standard_normal(2))]
    cs = fixtures.complex_step_gradients(X, Y, params)
    h = 1e-6
    for j, (W, _) in enumerate(params):
        for index in np.ndindex(W.shape):
            plus = [(w.copy(), b) for w, b in params]
            minus = [(w.copy(), b) for w, b in params]
            plus[j][0][index] += h
            minus[j][0][index] -= h
            loss = lambda p: mlp.cross_entropy(mlp.forward(X, p)[0][-1], Y)  # noqa: E731
            fd = (loss(plus) - loss(minus)) / (2 * h)
            assert abs(fd - cs[j][0][index]) < 1e-8


def test_generate_refuses_to_overwrite_and_update_regenerates_identically(fixture_copy: Path) -> None:
    with pytest.raises(golden.FixtureError, match="never overwrites"):
        fixtures.write_fixtures(fixture_copy, overwrite=False)
    before = {p.name: p.read_bytes() for p in fixture_copy.iterdir() if p.suffix == ".npz"}
    fixtures.write_fixtures(fixture_copy, overwrite=True)
    after = {p.name: p.read_bytes() for p in fixture_copy.iterdir() if p.suffix == ".npz"}
    assert before == after  # deterministic bytes: an update without changes is a no-op


def test_manifest_describes_every_key() -> None:
    manifest = golden.load_manifest()
    for cid, entry in manifest["cases"].items():
        arrays = golden.load_npz(FIXTURES_DIR, entry)
        assert {"description", "architecture", "dtype", "seed", "sha256"} <= set(entry)
        for key, tol in entry["tolerances"].items():
            assert tol["scale"] in arrays and tol["k"] > 0, (cid, key)
            assert arrays[tol["scale"]].shape == arrays[key].shape, (cid, key)
        for key in entry["ambiguous"]:
            assert f"lo_{key}" in arrays and f"hi_{key}" in arrays
    # The cases the issue asks for exist.
    cases = manifest["cases"]
    assert {e["dtype"] for e in cases.values()} == {"float32", "float64"}
    assert {len(e["architecture"]) - 1 for e in cases.values() if e["kind"] == "mlp"} >= {1, 2, 3, 4}
    assert any(e["batch"] == 1 for e in cases.values())
    assert cases["f64_zero_preact"]["ambiguous"]


# ------------------------------------------------------------- the tolerance rule itself

def _case(case_id: str):
    entry = golden.load_manifest()["cases"][case_id]
    return entry, golden.load_npz(FIXTURES_DIR, entry)


@pytest.mark.parametrize("guard", [
    lambda p: np.log(p + 1e-12),  # the section's
    lambda p: np.log(np.clip(p, 1e-7, 1 - 1e-7)),  # Keras-style clipping at both ends
    lambda p: np.log(np.maximum(p, np.finfo(np.float64).tiny)),
    lambda p: np.log(np.clip(p, 1e-15, None)),
])
@pytest.mark.parametrize("case_id", ["f64_ce_log0", "f64_large_logits", "f64_depth2_b16"])
def test_loss_interval_accepts_any_reasonable_log_guard(guard, case_id: str) -> None:
    entry, arrays = _case(case_id)
    P, Y = (arrays["Y_hat"], arrays["Y"]) if "Y_hat" in arrays else (arrays[f"act{len(entry['architecture']) - 1}"], arrays["Y"])
    loss = np.asarray(-np.mean(np.sum(Y * guard(P), axis=1)))
    golden.assert_loss_within(loss, arrays, entry["tolerances"]["loss"]["k"], where="t", hint="")


@pytest.mark.parametrize("wrong", [
    lambda P, Y: -np.sum(np.sum(Y * np.log(P + 1e-12), axis=1)),  # sum, not mean
    lambda P, Y: np.mean(np.sum(Y * np.log(P + 1e-12), axis=1)),  # sign
    lambda P, Y: -np.mean(np.sum(Y * np.log10(P + 1e-12), axis=1)),  # log base
    lambda P, Y: -np.mean(np.sum(P * np.log(Y + 1e-12), axis=1)),  # swapped
])
def test_loss_interval_rejects_wrong_losses(wrong) -> None:
    entry, arrays = _case("f64_depth2_b16")
    with pytest.raises(AssertionError, match="cross_entropy=.*, but should be"):
        golden.assert_loss_within(np.asarray(wrong(arrays["act2"], arrays["Y"])), arrays,
                                  entry["tolerances"]["loss"]["k"], where="t", hint="")


def test_unguarded_log0_is_reported_as_a_missing_guard() -> None:
    entry, arrays = _case("f64_ce_log0")
    with np.errstate(divide="ignore", invalid="ignore"):
        loss = np.asarray(-np.mean(np.sum(arrays["Y"] * np.log(arrays["Y_hat"]), axis=1)))
    with pytest.raises(AssertionError, match="(?s)should be finite.*log\\(0\\) guard"):
        golden.assert_loss_within(loss, arrays, entry["tolerances"]["loss"]["k"], where="t", hint="")


def test_float32_results_get_float32_tolerance_and_float64_get_float64() -> None:
    entry, arrays = _case("f64_depth4_b10")
    expected = arrays["act4"]

    def check(value: np.ndarray) -> None:
        golden.assert_matches_fixture({"act4": value}, arrays, entry, [("act4", "a")], where="t",
                                      hint="")

    check(expected.astype(np.float32))  # a legitimately float32 candidate
    # A float64 result 1e-9 off is outside float64 precision but within float32 rounding: not
    # a bug, so it passes with a finding (SPEC.md, dtype policy); the smallest real bug (1/64
    # relative) fails.
    from conformance.contract import PrecisionFinding

    with pytest.warns(PrecisionFinding):
        check(expected * (1 + 1e-9))
    with pytest.raises(AssertionError, match=r"mismatched entries: a: \d+/50"):
        check(expected * (1 + 1 / 64))


def test_relu_prime_at_zero_choices_all_pass_and_a_wrong_value_fails() -> None:
    entry, arrays = _case("f64_zero_preact")
    L = golden.n_layers_of(entry)
    acts = [arrays[f"act{i}"] for i in range(L + 1)]
    pres = [arrays[f"pre{i}"] for i in range(L)]
    params = golden.params_of(arrays, L)
    for mask in (lambda z: z > 0, lambda z: z >= 0, lambda z: np.heaviside(z, 0.5)):
        grads = backpropagate(output_error(acts[-1], arrays["Y"]), acts, pres, params, mask)
        values = {key: g for j, (dW, db) in enumerate(grads) for key, g in ((f"dW{j}", dW), (f"db{j}", db))}
        golden.assert_matches_fixture(values, arrays, entry, [(key, key) for key in values],
                                      where="t", hint="")
    grads = backpropagate(output_error(acts[-1], arrays["Y"]), acts, pres, params, lambda z: 2.0 * (z >= 0))
    with pytest.raises(AssertionError):
        golden.assert_matches_fixture({"dW0": grads[0][0]}, arrays, entry, [("dW0", "dW0")],
                                      where="t", hint="")


def test_failure_message_has_headline_counts_table_and_next_step() -> None:
    entry, arrays = _case("f64_depth2_b16")
    got = arrays["dW0"].copy()
    got[2, 5] += 0.5
    with pytest.raises(AssertionError) as info:
        golden.assert_matches_fixture({"dW0": got}, arrays, entry, [("dW0", "dW[0]")],
                                      where="backward(case=f64_depth2_b16)", hint="look at layer 0.")
    text = str(info.value)
    assert text.startswith(f"dW[0][2, 5]={got[2, 5]:.6g}, but should be {arrays['dW0'][2, 5]:.6g}")
    assert "[backward(case=f64_depth2_b16)]" in text.splitlines()[0]
    assert "mismatched entries: dW[0]: 1/48" in text
    assert "abs err" in text and "0.5 " in text.split("worst entry per tensor:")[1]
    assert "  contract: |actual - expected| <= k * eps * scale" in text
    assert text.endswith("  next: look at layer 0.")


def test_refactor_check_treats_equal_nan_and_inf_as_unchanged_and_names_a_change() -> None:
    recorded = np.array([1.0, np.nan, np.inf, -np.inf, 0.0])
    golden.assert_identical(recorded.copy(), recorded, name="a", where="t", rtol=0, atol=0)
    changed = recorded.copy()
    changed[4] = 1e-300
    with pytest.raises(AssertionError, match=r"(?s)^a\[4\]=1e-300, but should be 0 \[t\].*bit-identical"):
        golden.assert_identical(changed, recorded, name="a", where="t", rtol=0, atol=0)
    golden.assert_identical(changed, recorded, name="a", where="t", rtol=0, atol=1e-299)


def test_an_ambiguous_golden_entry_is_shown_as_its_interval() -> None:
    entry, arrays = _case("f64_zero_preact")
    key = next(k for k in entry["ambiguous"] if k.startswith("dW"))
    lo, hi = arrays[f"lo_{key}"], arrays[f"hi_{key}"]
    where = np.flatnonzero(lo.ravel() != hi.ravel())
    assert where.size, "the fixture has no ambiguous entry"
    got = arrays[key].copy()
    got.ravel()[where[0]] = hi.ravel()[where[0]] + 1.0
    with pytest.raises(AssertionError) as info:
        golden.assert_matches_fixture({key: got}, arrays, entry, [(key, key)], where="t", hint="")
    headline = str(info.value).splitlines()[0]
    assert ", but should be [" in headline and "ReLU'(0) may be 0 or 1" in str(info.value)


@pytest.mark.parametrize("value, message", [
    (np.zeros((2, 2)).view(np.matrix), "is a numpy.matrix, but should be a numpy.ndarray"),
    (np.zeros((2, 2), dtype=np.float16), "dtype float16, but should be float32 or float64"),
    ([[0.0, 0.0], [0.0, 0.0]], "is a list, but should be a numpy.ndarray"),
    (np.zeros((2, 3)), "shape (2, 3), but should have shape (2, 2)"),
])
def test_obtained_values_are_validated_before_comparison(value, message: str) -> None:
    with pytest.raises(AssertionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        contract.validate_array(value, "x", "t", (2, 2))


# ------------------------------------------------------------------ refactor workflow

def _pytest(*args: str) -> subprocess.CompletedProcess:
    return run_pytest("conformance/test_golden.py", "-q", "-k", "matches_recording", *args, cwd=ROOT)


def test_record_then_golden_passes_a_tweak_fails_and_tolerance_relaxes(tmp_path: Path) -> None:
    recording = tmp_path / "golden"
    result = subprocess.run([sys.executable, "-m", "conformance.fixture_files", "record", "--impl",
                             "conformance.reference.mlp", "--out", str(recording)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (recording / "recording.json").is_file()

    same = _pytest("--impl", "conformance.reference.mlp", "--golden", str(recording))
    assert same.returncode == 0 and " passed" in same.stdout, same.stdout

    # A "refactor" that moves the softmax's rounding by an ulp here and there.
    tweaked = tmp_path / "tweaked.py"
    source = (ROOT / "conformance" / "reference" / "mlp.py").read_text()
    tweaked.write_text(source.replace("return e / e.sum(axis=-1, keepdims=True)",
                                      "return e * (1.0 / e.sum(axis=-1, keepdims=True))"))
    assert tweaked.read_text() != source
    changed = _pytest("--impl", str(tweaked), "--golden", str(recording))
    assert changed.returncode == 1
    assert "recorded values in case" in changed.stdout and "bit-identical" in changed.stdout
    # float32 cases move by a float32 ulp (~6e-8 relative), so that is the relaxation needed.
    relaxed = _pytest("--impl", str(tweaked), "--golden", str(recording), "--golden-rtol", "1e-6")
    assert relaxed.returncode == 0, relaxed.stdout

    # A recording with a file missing fails, never re-creates it.
    (recording / "f64_depth1_b8.npz").unlink()
    missing = _pytest("--impl", "conformance.reference.mlp", "--golden", str(recording))
    assert missing.returncode == 1 and "f64_depth1_b8.npz is missing" in missing.stdout
    assert not (recording / "f64_depth1_b8.npz").exists()


def test_golden_rounding_accepts_another_summation_order_and_still_catches_a_real_change(
        tmp_path: Path) -> None:
    """A new user found that the README's "rounding only" advice (--golden-rtol 1e-12) fails an
    einsum refactor on the float32 cases, where rounding moves values by ~1e-7 relative and
    cancellation makes some entries far smaller than their terms. --golden-rounding holds each
    value to the golden area's rule (k * eps * scale, in its own dtype) instead."""
    recording = tmp_path / "golden"
    subprocess.run([sys.executable, "-m", "conformance.fixture_files", "record", "--impl", "conformance.reference.mlp",
                    "--out", str(recording)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                   check=True)
    source = (ROOT / "conformance" / "reference" / "mlp.py").read_text()
    einsum = source.replace("dW = A_prev.T @ delta  #", "dW = np.einsum('bi,bo->io', A_prev, delta)  #"
                            ).replace("Z = activations[-1] @ W + b  #",
                                      "Z = np.einsum('bi,io->bo', activations[-1], W) + b  #")
    assert einsum.count("einsum") == 2
    refactored = tmp_path / "refactored.py"
    refactored.write_text(einsum)
    assert _pytest("--impl", str(refactored), "--golden", str(recording)).returncode == 1  # bit-exact
    rounding = _pytest("--impl", str(refactored), "--golden", str(recording), "--golden-rounding")
    assert rounding.returncode == 0, rounding.stdout
    changed = tmp_path / "changed.py"  # a real change: delta off by 1e-6 / B relative
    changed.write_text(einsum.replace("delta = (Y_hat - Y) / B", "delta = (Y_hat - Y) / (B + 1e-6)"))
    caught = _pytest("--impl", str(changed), "--golden", str(recording), "--golden-rounding")
    assert caught.returncode == 1 and "golden rounding rule" in caught.stdout, caught.stdout


def test_record_keeps_a_recording_unless_forced_and_hides_the_candidates_prints(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Recording again over the baseline would make every later refactor check pass."""
    noisy = tmp_path / "noisy.py"
    noisy.write_text((ROOT / "conformance" / "reference" / "mlp.py").read_text() + (
        "\n\n_train = train\n\n\ndef train(*args, **kwargs):\n"
        "    print('epoch 0: test acc = 0.0000')\n    return _train(*args, **kwargs)\n"))
    out = tmp_path / "golden"
    assert fixtures.record_main(["--impl", str(noisy), "--out", str(out)]) == 0
    first = capsys.readouterr()
    assert "epoch 0" not in first.out and "lines the candidate printed" in first.out
    before = (out / "recording.json").read_bytes()
    assert fixtures.main(["record", "--impl", "conformance.reference.mlp", "--out", str(out)]) == 1
    refused = capsys.readouterr().err
    assert "already holds a recording of" in refused and "--force" in refused and "noisy.py" in refused
    assert (out / "recording.json").read_bytes() == before
    assert fixtures.record_main(["--impl", "conformance.reference.mlp", "--out", str(out), "--force"]) == 0
    assert "(replaced the recording of " in capsys.readouterr().out
    assert json.loads((out / "recording.json").read_text())["impl"] == "conformance.reference.mlp"


def test_record_help_names_the_command_once(capsys: pytest.CaptureFixture) -> None:
    from conformance import cli

    with pytest.raises(SystemExit):
        cli.main(["record", "--help"])
    assert capsys.readouterr().out.startswith("usage: backprop-conformance record [-h]")


def test_golden_dir_that_does_not_exist_fails(tmp_path: Path) -> None:
    result = _pytest("--impl", "conformance.reference.mlp", "--golden", str(tmp_path / "nowhere"))
    assert result.returncode == 1 and "no such directory" in result.stdout
    assert "1 failed" in result.stdout, result.stdout  # once, not once per recorded case
    assert not (tmp_path / "nowhere").exists()
