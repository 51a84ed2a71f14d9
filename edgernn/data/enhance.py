"""Speech-enhancement data: noisy/clean pairs of synthetic speech (espeak-ng, the ``kws``
speakers) and noise at several SNRs, as per-frame spectra for a streaming enhancer.

Each sample is a phrase of 3-6 words (command and other words) said by one speaker at a random
speed and pitch, at a random level and time shift in ``(steps - 1) * hop`` samples at 16 kHz,
plus white, pink, brown, hum or babble noise at one of ``snrs`` (dB, over the whole clip).
Spectra: the STFT of ``edgernn.data.audio`` (periodic Hann of ``n_fft = 2 * (bins - 1)``
samples, hop ``n_fft // 2``, centred: exactly ``steps`` frames), so with S, N and Y = S + N
the clean, noise and noisy spectra per frame and bin:

- ``x`` = log(|Y|^2 + 1e-6): the model input, one frame per step [N, T, F];
- ``y`` = the ideal ratio mask sqrt(|S|^2 / (|S|^2 + |N|^2)) in [0, 1] [N, T, F];
- ``clean`` = |S| and ``noisy`` = |Y| [N, T, F]: what ``--metric-fn snr_gain`` reads (the SNR
  of ``mask * noisy`` against ``clean`` minus that of ``noisy``).

``split``: "train" or "test" speakers as in ``kws`` (whole voice variants held out for test,
same seed), or "all". ``edgernn datasets --enhance N --out F.npz`` writes such a file
(``write_npz``), ``meta`` saying the task (per-frame values), how it was made and each
sample's SNR.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgernn.data import audio, espeak
from edgernn.data.kws import KEYWORDS, UNKNOWN_WORDS, split_variants
from edgernn.errors import EdgeRNNError

LOG_EPS = 1e-6
SNRS = (-5.0, 0.0, 5.0, 10.0, 15.0)


@dataclass
class EnhancementData:
    x: np.ndarray  # [N, T, F] float32 log-power of the noisy frames
    y: np.ndarray  # [N, T, F] float32 ideal ratio mask
    clean: np.ndarray  # [N, T, F] float32 |S|
    noisy: np.ndarray  # [N, T, F] float32 |S + N|
    snr_db: np.ndarray  # [N] the SNR each sample was mixed at
    speakers: list[str]
    description: str
    meta: dict = field(default_factory=dict)
    speech: np.ndarray | None = None  # [N, L] waveforms (keep_audio only)
    noise: np.ndarray | None = None  # [N, L] the noise as added


def irm(clean_spec: np.ndarray, noise_spec: np.ndarray) -> np.ndarray:
    """The ideal ratio mask sqrt(|S|^2 / (|S|^2 + |N|^2)) per bin (0 where both are 0)."""
    ps = np.abs(clean_spec) ** 2
    pn = np.abs(noise_spec) ** 2
    return np.sqrt(ps / np.maximum(ps + pn, 1e-20))


def enhancement_pairs(
    n: int = 96, steps: int = 200, bins: int = 161, *, snrs: Sequence[float] = SNRS,
    noises: Sequence[str] = audio.NOISES, split: str = "test", seed: int = 0,
    words: Sequence[str] = KEYWORDS + UNKNOWN_WORDS, accents: Sequence[str] | None = None,
    variants: Sequence[str] | None = None, split_seed: int = 0, test_share: float = 0.2,
    speeds: tuple[int, int] = (130, 220), pitches: tuple[int, int] = (25, 75),
    speech_dbfs: tuple[float, float] = (-32.0, -16.0), keep_audio: bool = False,
    progress: espeak.Progress | None = None, cache_dir: Path | None = None,
) -> EnhancementData:
    """``n`` noisy/clean pairs of ``steps`` frames x ``bins`` bins (module docstring)."""
    if bins < 3 or steps < 2 or n < 1:
        raise EdgeRNNError(f"enhancement pairs need n >= 1, steps >= 2 and bins >= 3; got n {n}, "
                           f"steps {steps}, bins {bins}")
    if split not in ("train", "test", "all"):
        raise EdgeRNNError(f"split must be train, test or all, not {split!r}")
    t0 = time.perf_counter()
    espeak.program("speech-enhancement data")
    n_fft = 2 * (bins - 1)
    hop = n_fft // 2
    length = (steps - 1) * hop
    pool = espeak.speaker_pool(accents, variants, progress, cache_dir)
    if not pool.kept:
        raise EdgeRNNError("no espeak-ng voice synthesised any audio")
    _, test_v = split_variants([s.variant for s in pool.kept], test_share, split_seed)
    speakers = [s for s in pool.kept
                if split == "all" or (s.variant in test_v) == (split == "test")]
    rng = np.random.default_rng([seed, 7])
    plan = []
    for _ in range(n):
        s = speakers[int(rng.integers(len(speakers)))]
        k = int(rng.integers(3, 7))
        phrase = " ".join(words[int(i)] for i in rng.integers(len(words), size=k))
        plan.append((s, phrase, int(rng.integers(speeds[0], speeds[1] + 1)),
                     int(rng.integers(pitches[0], pitches[1] + 1))))

    def say(p):
        pcm, sr = espeak.speak_raw(p[0], p[1], p[2], p[3])
        return audio.trim(espeak.to_16k(pcm, sr))

    utts = espeak.pmap(say, plan, progress, "synthesising speech (espeak-ng)")
    speech = np.zeros((n, length))
    noise = np.zeros((n, length))
    snr = np.zeros(n)
    kinds = []
    for i, u in enumerate(utts):
        r = np.random.default_rng([seed, 8, i])
        level = r.uniform(*speech_dbfs)
        u = u * (10 ** (level / 20) / (np.sqrt(np.mean(u.astype(np.float64) ** 2)) + 1e-12))
        speech[i], _ = audio.place(u, length, r)
        kind = noises[int(r.integers(len(noises)))]
        snr[i] = snrs[int(r.integers(len(snrs)))]
        others = [v for j, v in enumerate(utts) if j != i and len(v)] or [u]
        _, noise[i] = audio.mix_at_snr(speech[i], audio.noise(kind, length, r, others), snr[i])
        peak = float(np.abs(speech[i] + noise[i]).max())
        if peak > 0.99:
            speech[i] *= 0.99 / peak
            noise[i] *= 0.99 / peak
        kinds.append(kind)
    s_spec = audio.stft(speech, n_fft, hop)
    n_spec = audio.stft(noise, n_fft, hop)
    y_spec = s_spec + n_spec  # the STFT is linear: the spectrum of speech + noise
    noisy = np.abs(y_spec)
    used = len({p[0] for p in plan})
    desc = (f"synthetic speech enhancement: {n} phrases of 3-6 words by {used} espeak-ng "
            f"speakers (of the {len(speakers)} in kws's {split} split) + "
            f"{'/'.join(noises)} noise at {'/'.join(f'{v:g}' for v in snrs)} dB SNR; "
            f"{steps} frames x {bins} bins ({n_fft}-point STFT, hop {hop} at 16 kHz); x = log "
            f"power of the noisy frames, y = ideal ratio mask, clean/noisy = magnitudes; seed "
            f"{seed}")
    meta = {"espeak_ng": espeak.version(), "n_fft": n_fft, "hop": hop, "sample_rate": audio.SR,
            "split": split, "seed": seed, "snr_db": snr.tolist(), "noise_kinds": kinds,
            "speakers": [p[0].voice for p in plan], "phrases": [p[1] for p in plan],
            "seconds": round(time.perf_counter() - t0, 2)}
    return EnhancementData(
        np.log(noisy**2 + LOG_EPS).astype(np.float32), irm(s_spec, n_spec).astype(np.float32),
        np.abs(s_spec).astype(np.float32), noisy.astype(np.float32), snr,
        [p[0].voice for p in plan], desc, meta,
        speech.astype(np.float32) if keep_audio else None,
        noise.astype(np.float32) if keep_audio else None)


def write_npz(path: Path, d: EnhancementData) -> None:
    """An evaluation file for ``bench``: ``x``, ``y`` (the mask), ``clean``, ``noisy`` and
    ``meta`` (JSON: per-frame values, the description, how it was made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"task": "forecast", "description": d.description,
            **{k: d.meta[k] for k in ("n_fft", "hop", "sample_rate", "split", "seed", "snr_db",
                                      "espeak_ng")}}
    with open(path, "wb") as f:
        np.savez(f, x=d.x, y=d.y, clean=d.clean, noisy=d.noisy, meta=np.array(json.dumps(meta)))


def _main(argv: list[str]) -> int:
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m edgernn.data.enhance",
                                 description="Write speech-enhancement pairs as an .npz for bench.")
    ap.add_argument("n", type=int, help="samples")
    ap.add_argument("out", type=Path, help="the .npz to write")
    ap.add_argument("--steps", type=int, default=200, help="frames per sample (200)")
    ap.add_argument("--bins", type=int, default=161, help="bins per frame (161)")
    ap.add_argument("--split", choices=("train", "test", "all"), default="test")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    try:
        d = enhancement_pairs(a.n, a.steps, a.bins, split=a.split, seed=a.seed)
    except EdgeRNNError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    write_npz(a.out, d)
    print(f"wrote {a.out}: x/y/clean/noisy {list(d.x.shape)}; {d.description}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_main(sys.argv[1:]))
