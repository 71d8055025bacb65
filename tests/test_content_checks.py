"""Audio content checks (NaN/inf, silence, too long; stereo 96 kHz and 1-sample files as documented) and a
featurizer that rejects one failing file instead of aborting the batch. No Ray needed."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from layouts import fsdd_wave
from orchestrator import preprocess
from orchestrator.audio import decode_audio
from orchestrator.config import AugmentConfig, FeatureConfig
from orchestrator.datasets import load_manifest
from orchestrator.errors import AudioError


def wav(wave: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


@pytest.mark.parametrize("data,reason", [
    (wav(np.array([0.1, np.inf, 0.2], dtype=np.float32), 8000, "FLOAT"), "NaN or infinite samples"),
    (wav(np.array([[0.1, 0.1], [0.2, -np.inf]], dtype=np.float32), 8000, "FLOAT"), "NaN or infinite samples"),
    (wav(np.zeros(8000, dtype=np.float32), 8000), r"silent audio: every sample is below 1e-06"),
    (wav(np.full(8000, 1e-8, dtype=np.float32), 8000, "FLOAT"), "silent audio"),
    (wav(fsdd_wave(3, 8000, 2.0), 8000), r"too long: 2\.0 s is over the maximum duration of 1\.5 s"),
], ids=["inf", "inf-stereo", "zeros", "below-floor", "too-long"])  # ids by name: float WAV bytes hold a
# write-time PEAK stamp, and pytest-xdist workers must collect identical ids
def test_bad_content_is_rejected_with_the_reason(data, reason):
    with pytest.raises(AudioError, match=reason):
        decode_audio(data, 8000, 800, max_seconds=1.5)


def test_opposite_phase_stereo_is_not_silence():
    wave = fsdd_wave(5, 8000, 0.5)
    out = decode_audio(wav(np.stack([wave, -wave], axis=1), 8000), 8000, 800)
    assert np.allclose(out, 0, atol=1e-4)  # the mix cancels, but the file itself is not silent


def test_stereo_96k_becomes_mono_at_the_target_rate():
    wave = fsdd_wave(2, 96000, 1.0)
    out = decode_audio(wav(np.stack([wave, 0.5 * wave], axis=1), 96000, "PCM_24"), 22050, 2205)
    assert out.dtype == np.float32 and out.ndim == 1 and abs(len(out) - 22050) <= 1
    reference = decode_audio(wav(0.75 * wave, 96000, "PCM_24"), 22050, 2205)
    np.testing.assert_allclose(out, reference, atol=1e-3)


def test_one_sample_file_is_zero_padded_to_one_window():
    out = decode_audio(wav(np.array([0.5], dtype=np.float32), 8000, "FLOAT"), 8000, 800)
    assert len(out) == 800 and out[0] == pytest.approx(0.5) and not out[1:].any()


def test_default_limit_is_ten_minutes():
    eleven_minutes = wav(np.full(11 * 60 * 100, 0.1, dtype=np.float32), 100, "FLOAT")
    with pytest.raises(AudioError, match="over the maximum duration of 600 s"):
        decode_audio(eleven_minutes, 100, 10)


def test_long_clips_are_rejected_from_the_header_before_decoding(fsdd_root):
    manifest = load_manifest("fsdd", fsdd_root).head(6)
    limit = float(manifest["duration"].median())
    marked = preprocess.reject_long_clips(manifest, limit)
    long = manifest["duration"] > limit
    assert marked.loc[long, "error"].str.startswith("too long: ").all() and (marked.loc[~long, "error"] == "").all()
    assert (manifest["error"] == "").all()  # the input is not modified


def test_a_failing_decoder_rejects_one_file_and_the_rest_complete(fsdd_root, monkeypatch):
    batch = load_manifest("fsdd", fsdd_root).head(4)
    bad = batch["path"].iloc[1]
    real = preprocess.decode_audio

    def decoder(data, rate, min_samples, max_seconds):
        if data == open(bad, "rb").read():
            raise ZeroDivisionError("boom in the resampler")
        return real(data, rate, min_samples, max_seconds)

    monkeypatch.setattr(preprocess, "decode_audio", decoder)
    featurizer = preprocess.Featurizer(FeatureConfig(height=16, width=16), 8000, 16, AugmentConfig(copies=1),
                                       rejections=None, root=str(fsdd_root))
    rows, specs, rejected = featurizer.featurize_rows(batch)
    assert rejected == [{"path": bad, "clip_id": batch["clip_id"].iloc[1],
                         "reason": "failed while decoding/featurizing: ZeroDivisionError: boom in the resampler"}]
    assert len(rows) == len(specs) == 3 * 2 and specs.shape[1:] == (3, 16, 16) and specs.dtype == np.float16
    assert batch["clip_id"].iloc[1] not in {r["source_id"] for r in rows}
    table = preprocess._to_arrow(rows, specs)
    assert table.num_rows == 6


def test_a_failing_featurizer_rejects_one_file(fsdd_root, monkeypatch):
    batch = load_manifest("fsdd", fsdd_root).head(3)
    featurizer = preprocess.Featurizer(FeatureConfig(height=16, width=16), 8000, 16, AugmentConfig(),
                                       rejections=None, root=str(fsdd_root))
    real = preprocess.featurize_clips
    calls = []

    def featurize(module, clips):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("CUDA error: an illegal memory access\nsecond line")
        return real(module, clips)

    monkeypatch.setattr(preprocess, "featurize_clips", featurize)
    rows, specs, rejected = featurizer.featurize_rows(batch)
    assert [r["reason"] for r in rejected] == ["failed while decoding/featurizing: RuntimeError: CUDA error: an "
                                              "illegal memory access"]
    assert len(rows) == 2 and specs.shape[0] == 2
    all_bad = pd.DataFrame(batch.iloc[:0])
    assert featurizer.featurize_rows(all_bad)[1].shape == (0, 3, 16, 16)
