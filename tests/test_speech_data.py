"""Synthetic speech data (issues 25 and 26): the espeak-ng keyword-spotting set ``kws`` and the
speech-enhancement pairs. Tiny configurations (3 words, 2 voices x 4 variants) generated into
a tmp cache in about a second; expected values come from formulas written out here (a DFT
sum, triangle filters, signal and noise powers, sha256 of espeak-ng's own output)."""

from __future__ import annotations

import hashlib
import subprocess

import numpy as np
import pytest

from edgernn.data import audio, enhance, espeak, kws
from edgernn.errors import EdgeRNNError

needs_espeak = pytest.mark.skipif(
    not espeak.available(),
    reason="espeak-ng is not installed (./scripts/system_deps.sh espeak-ng, as root)")

ACCENTS = ("gmw/en-US", "gmw/en")
# "nosuchvariant": espeak-ng falls back to the voice's own sound: a duplicate of ""
VARIANTS = ("", "f3", "m3", "nosuchvariant")
TINY = kws.KwsConfig(keywords=("yes", "no", "up"), unknown_words=("cat", "dog"),
                     accents=ACCENTS, variants=VARIANTS, keywords_per_speaker=3,
                     test_share=0.34, seed=5)


# ---- independent formulas ----------------------------------------------------------------

def plain_log_mel_frame(clip: np.ndarray, t: int) -> np.ndarray:
    """Frame t of the 40 log-mel features, written out: zero-pad 200 each side, samples
    [160 t, 160 t + 400), periodic Hann, a 512-point DFT as a sum, HTK-mel triangles."""
    padded = np.concatenate([np.zeros(200), clip.astype(np.float64), np.zeros(200)])
    frame = padded[160 * t: 160 * t + 400]
    n = np.arange(400)
    w = 0.5 - 0.5 * np.cos(2 * np.pi * n / 400)
    power = np.array([abs(np.sum(frame * w * np.exp(-2j * np.pi * k * n / 512))) ** 2
                      for k in range(257)])
    lo_mel = 2595 * np.log10(1 + 20 / 700)
    hi_mel = 2595 * np.log10(1 + 8000 / 700)
    edges = [700 * (10 ** ((lo_mel + i * (hi_mel - lo_mel) / 41) / 2595) - 1) for i in range(42)]
    out = []
    for m in range(40):
        lo, c, hi = edges[m], edges[m + 1], edges[m + 2]
        e = 0.0
        for k in range(257):
            f = k * 16000 / 512
            if lo < f < hi:
                e += power[k] * ((f - lo) / (c - lo) if f <= c else (hi - f) / (hi - c))
        out.append(np.log(e + 1e-6))
    return np.array(out)


def snr_of(speech: np.ndarray, noise: np.ndarray) -> float:
    s = speech.astype(np.float64)
    n = noise.astype(np.float64)
    return float(10 * np.log10(np.sum(s * s) / np.sum(n * n)))


def sha(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def test_log_mel_equals_the_written_out_formula():
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    clip = (0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-3 * t)
            + 0.05 * rng.standard_normal(16000)).astype(np.float32)
    feats = audio.log_mel(clip)
    assert feats.shape == (101, 40) and feats.dtype == np.float32
    for frame in (0, 37, 100):
        np.testing.assert_allclose(feats[frame], plain_log_mel_frame(clip, frame),
                                   rtol=1e-5, atol=1e-4)


def test_mix_at_snr_hits_the_target():
    rng = np.random.default_rng(1)
    speech = rng.standard_normal(16000) * np.hanning(16000)
    for kind in ("white", "pink", "brown", "hum"):
        nz = audio.noise(kind, 16000, rng)
        for target in (-5.0, 0.0, 12.5):
            mix, scaled = audio.mix_at_snr(speech, nz, target)
            assert snr_of(speech, mix - speech) == pytest.approx(target, abs=1e-9)
            np.testing.assert_allclose(mix - speech, scaled, atol=1e-12)


# ---- the keyword-spotting set ------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny set built with its audio kept, voice checks cached in a tmp folder."""
    cache = tmp_path_factory.mktemp("kws-cache")
    return kws.build(TINY, keep_audio=True, cache_dir=cache), cache


@needs_espeak
def test_identical_variants_are_dropped_by_their_audio(tiny, tmp_path):
    d, _ = tiny
    # ground truth: espeak-ng's own output for each candidate at default and at set speed and
    # pitch, hashed here; the same audio as an earlier voice at either setting: a duplicate
    settings = ([], ["-s", "160", "-p", "40"])
    first: list[dict[str, str]] = [{}, {}]
    want_kept, want_dropped = [], {}
    for a in ACCENTS:
        for v in VARIANTS:
            voice = f"{a}+{v}" if v else a
            hs = [hashlib.sha256(subprocess.run(
                ["espeak-ng", "-v", voice, *flags, "--stdout", espeak.PROBE_TEXT],
                capture_output=True, check=True).stdout[44:]).hexdigest() for flags in settings]
            same = [f[h] for f, h in zip(first, hs, strict=True) if h in f]
            if same:
                want_dropped[voice] = same[0]
            else:
                for f, h in zip(first, hs, strict=True):
                    f[h] = voice
                want_kept.append(voice)
    assert d.meta["speakers"] == want_kept
    assert d.meta["dropped"] == want_dropped
    assert {f"{a}+nosuchvariant" for a in ACCENTS} <= set(want_dropped)  # the check bites
    assert len(want_kept) == 6


@needs_espeak
def test_classes_shapes_and_every_speaker(tiny):
    d, _ = tiny
    assert d.meta["classes"] == ["yes", "no", "up", "unknown", "silence"]
    assert d.x_train.shape[1:] == (101, 40) and d.x_test.shape[1:] == (101, 40)
    assert d.audio_train.shape[1] == 16000
    # every kept speaker says each of the 3 words plus one unknown word, and gives a silence
    y = np.concatenate([d.y_train, d.y_test])
    assert np.bincount(y, minlength=5).tolist() == [6, 6, 6, 6, 6]
    assert len(set(d.speaker_train.tolist()) | set(d.speaker_test.tolist())) == 6


@needs_espeak
def test_features_are_log_mel_of_the_clips(tiny):
    d, _ = tiny
    for i in (0, len(d.y_train) - 1):
        for frame in (0, 50, 100):
            np.testing.assert_allclose(d.x_train[i, frame],
                                       plain_log_mel_frame(d.audio_train[i], frame),
                                       rtol=1e-5, atol=1e-3)


@needs_espeak
def test_clips_are_mixed_at_their_snr_and_silence_is_noise_only(tiny):
    d, _ = tiny
    audio_all = np.concatenate([d.audio_train, d.audio_test])
    speech_all = np.concatenate([d.speech_train, d.speech_test])
    snr = np.concatenate([d.snr_train, d.snr_test])
    y = np.concatenate([d.y_train, d.y_test])
    spoken = y != 4
    assert np.isnan(snr[~spoken]).all() and not np.isnan(snr[spoken]).any()
    assert set(snr[spoken].tolist()) <= set(TINY.snrs)
    assert len(set(snr[spoken].tolist())) >= 2
    for i in np.flatnonzero(spoken):
        noise = audio_all[i].astype(np.float64) - speech_all[i]
        assert snr_of(speech_all[i], noise) == pytest.approx(snr[i], abs=0.05)
    # random time shifts: where in its free room (1 s minus the word) each word starts
    room = []
    for i in np.flatnonzero(spoken):
        loud = np.flatnonzero(speech_all[i] != 0)
        room.append(loud[0] / (16000 - (loud[-1] + 1 - loud[0])))
    assert min(room) >= 0 and max(room) <= 1 and np.std(room) > 0.15
    assert not speech_all[~spoken].any() and (np.abs(audio_all[~spoken]) > 0).all(axis=1).any()


@needs_espeak
def test_split_is_speaker_disjoint_by_whole_variants(tiny):
    d, _ = tiny

    def variant(voice: str) -> str:
        return voice.split("+", 1)[1] if "+" in voice else ""

    train = set(d.speaker_train.tolist())
    test = set(d.speaker_test.tolist())
    assert train and test and not train & test
    assert not {variant(v) for v in train} & {variant(v) for v in test}
    assert {variant(v) for v in test} == set(d.meta["test_variants"])
    # each held-out variant is held out with every accent it is used with
    for v in d.meta["test_variants"]:
        assert {s for s in d.meta["speakers"] if variant(s) == v} <= test


@needs_espeak
def test_validation_groups_are_the_variants_the_test_split_holds_out_together(tiny):
    """The dataset's training groups (what early stopping validates on, whole groups at a
    time) are the variant families the held-out split uses: every training sample's group
    is its variant's family, and no group of training samples is a test family."""
    d, _ = tiny

    def variant(voice: str) -> str:
        return voice.split("+", 1)[1] if "+" in voice else ""

    ds = kws.to_dataset(d)
    assert ds.groups_train is not None and len(ds.groups_train) == len(d.y_train)
    fams = {kws.family(variant(v)) for v in d.speaker_train.tolist()}
    assert set(ds.groups_train.tolist()) == fams
    assert not fams & {kws.family(v) for v in d.meta["test_variants"]}


def test_related_variants_are_held_out_together():
    import re

    names = ["", "f1", "f2", "m1", "m3", "iven", "iven2", "iven3", "klatt2", "klatt3", "klatt4",
             "robosoft", "robosoft5", "robosoft7", "Gene", "Gene2", "steph", "steph3", "zac"]
    fam = {"iven": "iven", "iven2": "iven", "iven3": "iven", "klatt2": "klatt",
           "klatt3": "klatt", "klatt4": "klatt", "robosoft": "robosoft", "robosoft5": "robosoft",
           "robosoft7": "robosoft", "Gene": "Gene", "Gene2": "Gene", "steph": "steph",
           "steph3": "steph"}
    crossed_singles = False
    for seed in range(12):
        train, test = kws.split_variants(names, 0.3, seed)
        assert sorted(train + test) == sorted(names) and train and test
        fam_train = {fam.get(n, n) for n in train}
        fam_test = {fam.get(n, n) for n in test}
        assert not fam_train & fam_test, (seed, train, test)
        # 12 families (each of "", f1, f2, m1, m3, zac its own), ceil(0.3 * 12) = 4 held out
        assert len(fam_test) == 4
        crossed_singles |= bool({"m1", "m3"} & set(test)) and bool({"m1", "m3"} & set(train))
        assert all(re.fullmatch(r"[a-z]\d", n) or n in fam or n in ("", "zac") for n in names)
    assert crossed_singles  # m1 and m3 are different voices: they may land on either side


@needs_espeak
def test_generation_is_deterministic_and_seeded(tiny, tmp_path):
    d, cache = tiny
    again = kws.build(TINY, keep_audio=True, cache_dir=cache)
    assert sha(d.x_train, d.y_train, d.x_test, d.y_test, d.audio_train) == \
        sha(again.x_train, again.y_train, again.x_test, again.y_test, again.audio_train)
    other = kws.build(kws.KwsConfig(**{**TINY.__dict__, "seed": 6}), cache_dir=cache)
    assert sha(other.x_train, other.x_test) != sha(d.x_train, d.x_test)


@needs_espeak
def test_first_use_generates_with_progress_then_reads_the_cache(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert kws.status(TINY).startswith("synthetic speech (espeak-ng)")
    assert not (tmp_path / "edgernn").exists()  # status never generates
    d = kws.load(TINY)
    err = capfd.readouterr().err
    assert "synthesising the keyword-spotting set" in err and "log-mel features" in err
    path = tmp_path / "edgernn" / "datasets" / f"kws-{TINY.key()}.npz"
    assert d.path == path and path.is_file() and kws.status(TINY) is None

    def no_espeak(*a, **k):
        raise AssertionError("espeak-ng called although the set is cached")

    monkeypatch.setattr(espeak, "speak_raw", no_espeak)
    again = kws.load(TINY)
    assert sha(again.x_train, again.y_train, again.x_test) == sha(d.x_train, d.y_train, d.x_test)
    ds = kws.to_dataset(again)
    assert ds.description.startswith("synthetic speech: keyword spotting") and not ds.real
    assert ds.task == "classify" and ds.num_classes == 5
    assert ds.class_names[-2:] == ["unknown", "silence"]
    # each time step holds 2 consecutive 10 ms frames side by side: 101 frames -> 50 steps of
    # 2 x 40 features (the 101st frame dropped), checked against the cached frames
    assert again.x_train.shape[1:] == (101, 40)
    assert ds.seq_len == 50 and ds.features == 80
    x = again.x_train
    for t in (0, 17, 49):
        assert np.array_equal(ds.x_train[:, t, :40], x[:, 2 * t])
        assert np.array_equal(ds.x_train[:, t, 40:], x[:, 2 * t + 1])
    assert ds.feature_names[40] == "log_mel_0_frame1" and len(ds.feature_names) == 80
    one = kws.to_dataset(again, frames_per_step=1)  # the frames as they are
    assert one.seq_len == 101 and np.array_equal(one.x_test, again.x_test)
    for bad in (0, -1, 102):  # no frames per step, or more than the clip has: refused
        with pytest.raises(ValueError, match="frames per step must be 1..101"):
            audio.stack_frames(x, bad)


@needs_espeak
def test_cached_features_are_the_built_ones_to_float16(tiny, tmp_path, monkeypatch):
    d, _ = tiny
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    got = kws.load(TINY, progress=lambda *a: None)
    np.testing.assert_array_equal(got.y_train, d.y_train)
    np.testing.assert_allclose(got.x_train, d.x_train, atol=0.01)


def test_registered_as_a_synthetic_speech_dataset():
    from edgernn.data.datasets import info, names

    assert "kws" in names()
    meta = info("kws")
    assert meta.domain == "speech" and "espeak-ng" in meta.source and meta.status is not None


def test_missing_espeak_is_one_line_naming_the_install_step(tmp_path, monkeypatch):
    from tests.conftest import cli

    monkeypatch.setenv("EDGERNN_ESPEAK", str(tmp_path / "no-espeak-ng"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(EdgeRNNError) as e:
        kws.load(TINY)
    msg = str(e.value)
    assert "\n" not in msg and "espeak-ng" in msg
    assert "./scripts/system_deps.sh espeak-ng" in msg and "apt-get install espeak-ng" in msg
    assert kws.status(TINY).startswith("synthetic speech; not available")
    with pytest.raises(EdgeRNNError, match="system_deps.sh"):
        enhance.enhancement_pairs(2, 10, 17)
    code, _, err = cli(["train", "--dataset", "kws", "--out", tmp_path / "m.pt"])
    assert code == 1 and "apt-get install espeak-ng" in err
    assert len(err.strip().splitlines()) == 1, err


# ---- speech-enhancement pairs ------------------------------------------------------------

@needs_espeak
def test_enhancement_pairs_are_spectra_masks_and_snrs(tmp_path):
    from edgernn.data.evalfile import load_eval
    from edgernn.metrics.builtin import snr_gain

    steps, bins = 40, 65  # 128-point frames, hop 64
    d = enhance.enhancement_pairs(5, steps, bins, snrs=(0.0, 10.0), accents=ACCENTS,
                                  variants=VARIANTS, split="all", seed=3, keep_audio=True,
                                  cache_dir=tmp_path)
    assert d.x.shape == d.y.shape == d.clean.shape == d.noisy.shape == (5, steps, bins)
    assert d.speech.shape == (5, (steps - 1) * 64)
    for i in range(5):
        assert snr_of(d.speech[i], d.noise[i]) == pytest.approx(d.snr_db[i], abs=0.01)
        assert d.snr_db[i] in (0.0, 10.0)
    # one frame of one sample, by a DFT sum of the Hann-windowed, centred signals
    n = np.arange(128)
    w = 0.5 - 0.5 * np.cos(2 * np.pi * n / 128)
    k = np.arange(bins)[:, None]
    for i, t in ((0, 0), (2, 17), (4, steps - 1)):
        def spec(sig, t=t):
            padded = np.concatenate([np.zeros(64), sig.astype(np.float64), np.zeros(64)])
            return (padded[64 * t: 64 * t + 128] * w * np.exp(-2j * np.pi * k * n / 128)).sum(1)

        s, nz = spec(d.speech[i]), spec(d.noise[i])
        np.testing.assert_allclose(d.clean[i, t], np.abs(s), rtol=1e-3, atol=1e-6)
        np.testing.assert_allclose(d.noisy[i, t], np.abs(s + nz), rtol=1e-3, atol=1e-6)
        np.testing.assert_allclose(d.x[i, t], np.log(np.abs(s + nz) ** 2 + 1e-6), atol=1e-3)
        mask = np.sqrt(np.abs(s) ** 2 / (np.abs(s) ** 2 + np.abs(nz) ** 2))
        np.testing.assert_allclose(d.y[i, t], mask, atol=1e-4)
    assert d.y.min() >= 0.0 and d.y.max() <= 1.0
    # the metric edgernn benches with: the ideal mask improves the SNR, "all ones" does not
    assert snr_gain(d.y, np.ones_like(d.y), d.clean, d.noisy) == pytest.approx(0.0, abs=1e-9)
    assert snr_gain(d.y, d.y, d.clean, d.noisy) > 3.0

    path = tmp_path / "enh.npz"
    enhance.write_npz(path, d)
    with np.load(path) as f:
        assert set(f.files) == {"x", "y", "clean", "noisy", "meta"}
    ev = load_eval(path)
    assert ev.x.shape == (5, steps, bins) and ev.y.shape == (5, steps, bins)
    assert ev.task == "forecast"


@needs_espeak
def test_enhancement_splits_follow_the_kws_speakers(tmp_path):
    kw = {"accents": ACCENTS, "variants": VARIANTS, "cache_dir": tmp_path, "split_seed": 5,
          "test_share": 0.34}
    train = enhance.enhancement_pairs(6, 10, 17, split="train", **kw)
    test = enhance.enhancement_pairs(6, 10, 17, split="test", **kw)
    _, held = kws.split_variants(["", "f3", "m3"], 0.34, 5)
    assert 0 < len(held) < 3

    def variant(voice: str) -> str:
        return voice.split("+", 1)[1] if "+" in voice else ""

    assert {variant(v) for v in test.speakers} <= set(held)
    assert not {variant(v) for v in train.speakers} & set(held)
    again = enhance.enhancement_pairs(6, 10, 17, split="test", **kw)
    assert sha(again.x, again.y) == sha(test.x, test.y)


@needs_espeak
def test_enhance_module_writes_an_npz_bench_reads(tmp_path, monkeypatch, capsys):
    from edgernn.data.evalfile import load_eval

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(espeak, "accents", lambda: ACCENTS)  # a small speaker pool
    monkeypatch.setattr(espeak, "variants", lambda: VARIANTS[1:])
    path = tmp_path / "e.npz"
    assert enhance._main(["3", str(path), "--steps", "12", "--bins", "17", "--seed", "4"]) == 0
    want = enhance.enhancement_pairs(3, 12, 17, seed=4)
    ev = load_eval(path)
    np.testing.assert_array_equal(ev.x, want.x)
    np.testing.assert_array_equal(ev.y, want.y)
    with np.load(path) as f:
        np.testing.assert_array_equal(f["clean"], want.clean)
        np.testing.assert_array_equal(f["noisy"], want.noisy)
    assert enhance._main(["0", str(tmp_path / "none.npz")]) == 1
    assert "n >= 1" in capsys.readouterr().err and not (tmp_path / "none.npz").exists()


def test_an_espeak_that_says_nothing_is_one_line(tmp_path, monkeypatch):
    fake = tmp_path / "espeak-ng"
    fake.write_text("#!/bin/sh\necho 'cannot open audio data' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("EDGERNN_ESPEAK", str(fake))
    monkeypatch.setattr(espeak, "version", lambda: "fake")
    with pytest.raises(EdgeRNNError) as e:
        espeak.speak_raw(espeak.Speaker("gmw/en-US", "f3"), "yes")
    assert str(e.value) == ("espeak-ng -v gmw/en-US+f3 failed on 'yes' (exit 3: cannot open "
                            "audio data)")
    assert espeak.speak_raw(espeak.Speaker("gmw/en-US"), "yes", strict=False)[0].size == 0
    with pytest.raises(EdgeRNNError, match="no espeak-ng voice synthesised any audio") as e:
        kws.build(TINY, cache_dir=tmp_path)
    assert "\n" not in str(e.value)


# ---- the CLI: listing never synthesises; --enhance writes the pairs ----------------------

def test_datasets_lists_kws_without_synthesising_it(tmp_path, monkeypatch):
    from tests.conftest import cli

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    code, out, err = cli(["datasets"])
    assert code == 0, err
    line = next(ln for ln in out.splitlines() if ln.startswith("kws "))
    if espeak.available():
        assert "synthetic speech (espeak-ng)" in line and "synthesised at first use" in line
    else:
        assert "not available" in line and "espeak-ng" in line
    assert not (tmp_path / "edgernn").exists()
    assert any(ln.startswith("tokens ") for ln in out.splitlines())


@needs_espeak
def test_datasets_enhance_writes_the_pairs(tmp_path, monkeypatch):
    from tests.conftest import cli

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(espeak, "accents", lambda: ACCENTS)  # a small speaker pool
    monkeypatch.setattr(espeak, "variants", lambda: VARIANTS[1:])
    path = tmp_path / "enh.npz"
    code, out, err = cli(["datasets", "--enhance", "4", "--steps", "20", "--bins", "33",
                          "--split", "train", "--seed", "2", "--out", path])
    assert code == 0, err
    with np.load(path) as f:
        assert set(f.files) == {"x", "y", "clean", "noisy", "meta"}
        assert f["x"].shape == f["y"].shape == f["clean"].shape == f["noisy"].shape == (4, 20, 33)
        want = enhance.enhancement_pairs(4, 20, 33, split="train", seed=2)
        np.testing.assert_array_equal(f["y"], want.y)
    code, _, err = cli(["datasets", "--enhance", "4"])
    assert code == 1 and "--enhance needs --out" in err and len(err.strip().splitlines()) == 1
