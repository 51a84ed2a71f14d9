"""Audio helpers for the synthetic speech datasets, numpy only: resampling, framing, the
short-time Fourier transform, 40-band log-mel features, noise and mixing at a given SNR.

Definitions (the tests recompute them from these words):

- **frames**: with ``center``, the signal is zero-padded by ``win // 2`` on each side; frame
  ``t`` is samples ``[t * hop, t * hop + win)`` of the padded signal; ``1 + (len + 2 * (win //
  2) - win) // hop`` frames (a 1 s clip at 16 kHz, win 400, hop 160: 101 frames).
- **window**: periodic Hann, ``w[n] = 0.5 - 0.5 cos(2 pi n / win)``.
- **power spectrum**: ``|rfft(frame * w, n_fft)|^2`` (the frame zero-padded to ``n_fft``).
- **mel scale** (HTK): ``mel(f) = 2595 log10(1 + f / 700)``; ``bands`` triangles with centres
  equally spaced in mel between ``fmin`` and ``fmax`` (``bands + 2`` points, the ends being the
  outer feet); band ``m``'s weight at bin frequency ``f = k sr / n_fft`` is
  ``max(0, min((f - lo) / (c - lo), (hi - f) / (hi - c)))`` with ``lo, c, hi`` in Hz.
- **log-mel**: ``log(mel energies + 1e-6)`` (natural log).
- **SNR** of a mix ``s + n``: ``10 log10(sum s^2 / sum n^2)`` over the whole clip.
"""

from __future__ import annotations

import numpy as np

SR = 16000
WIN = 400  # 25 ms
HOP = 160  # 10 ms
N_FFT = 512
MEL_BANDS = 40
FMIN, FMAX = 20.0, 8000.0
LOG_EPS = 1e-6


def resample(x: np.ndarray, sr_in: int, sr_out: int = SR) -> np.ndarray:
    """Band-limited resampling by the FFT (the spectrum cut or zero-extended at the new
    Nyquist frequency); the clip is padded with silence first so its ends do not wrap."""
    if sr_in == sr_out:
        return x.astype(np.float32)
    pad = int(0.05 * sr_in)
    xp = np.pad(x.astype(np.float64), (pad, pad))
    n_out = int(round(len(xp) * sr_out / sr_in))
    spec = np.fft.rfft(xp)
    want = n_out // 2 + 1
    spec = spec[:want] if want <= len(spec) else np.pad(spec, (0, want - len(spec)))
    y = np.fft.irfft(spec, n_out) * (n_out / len(xp))
    cut = int(round(pad * sr_out / sr_in))
    return y[cut: len(y) - cut].astype(np.float32)


def hann(win: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)


def frames(x: np.ndarray, win: int, hop: int, center: bool = True) -> np.ndarray:
    """[..., T, win] frames of [..., L] signals (see the module docstring)."""
    if center:
        pad = [(0, 0)] * (x.ndim - 1) + [(win // 2, win // 2)]
        x = np.pad(x, pad)
    n = 1 + (x.shape[-1] - win) // hop
    idx = np.arange(win)[None, :] + hop * np.arange(n)[:, None]
    return x[..., idx]


def stft(x: np.ndarray, n_fft: int, hop: int, win: int | None = None,
         center: bool = True) -> np.ndarray:
    """Complex spectra [..., T, n_fft // 2 + 1] of [..., L] signals (periodic Hann window)."""
    win = win or n_fft
    f = frames(x.astype(np.float64), win, hop, center) * hann(win)
    return np.fft.rfft(f, n_fft, axis=-1)


def mel_filters(bands: int = MEL_BANDS, n_fft: int = N_FFT, sr: int = SR,
                fmin: float = FMIN, fmax: float = FMAX) -> np.ndarray:
    """[bands, n_fft // 2 + 1] triangular HTK-mel filters (module docstring)."""
    def mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    pts = hz(np.linspace(mel(fmin), mel(fmax), bands + 2))
    f = np.arange(n_fft // 2 + 1) * sr / n_fft
    lo, c, hi = pts[:-2, None], pts[1:-1, None], pts[2:, None]
    return np.maximum(0.0, np.minimum((f - lo) / (c - lo), (hi - f) / (hi - c)))


_MEL = mel_filters()


def log_mel(x: np.ndarray) -> np.ndarray:
    """[..., 101, 40] float32 log-mel features of [..., 16000] clips at 16 kHz: 25 ms periodic
    Hann frames every 10 ms (centred), 512-point power spectra, 40 HTK-mel bands 20-8000 Hz,
    natural log of energy + 1e-6."""
    spec = stft(x, N_FFT, HOP, WIN)
    power = (spec.real**2 + spec.imag**2).reshape(-1, spec.shape[-1])
    mel = (power @ _MEL.T).reshape(*spec.shape[:-1], _MEL.shape[0])  # 2-d: a BLAS matmul
    return np.log(mel + LOG_EPS).astype(np.float32)


# ---- noise -----------------------------------------------------------------------------------

NOISES = ("white", "pink", "brown", "hum", "babble")


def stack_frames(x: np.ndarray, k: int) -> np.ndarray:
    """[..., T, F] frames as [..., T // k, k * F]: step ``t`` holds frames ``t*k .. t*k+k-1``
    side by side (a lower frame rate, as low-frame-rate acoustic models read speech); the last
    ``T % k`` frames are dropped."""
    if k < 1 or k > x.shape[-2]:
        raise ValueError(f"frames per step must be 1..{x.shape[-2]} (the frames), got {k}")
    if k == 1:
        return x
    t, f = x.shape[-2], x.shape[-1]
    steps = t // k
    return np.ascontiguousarray(x[..., :steps * k, :].reshape(*x.shape[:-2], steps, k * f))


def _shaped(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Gaussian noise with power spectral density ~ 1 / f**exponent."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spec / f ** (exponent / 2), n)


def noise(kind: str, n: int, rng: np.random.Generator,
          speech: list[np.ndarray] | None = None) -> np.ndarray:
    """``n`` samples of unit-RMS noise: white, pink (1/f), brown (1/f^2), mains hum (50 or
    60 Hz and harmonics over a little white noise) or babble (several time-reversed utterances
    from ``speech`` summed at random offsets: speech-like, no words)."""
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":
        x = _shaped(rng, n, 1.0)
    elif kind == "brown":
        x = _shaped(rng, n, 2.0)
    elif kind == "hum":
        t = np.arange(n) / SR
        base = rng.choice([50.0, 60.0])
        x = sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * base * k * t + rng.uniform(0, 6.3))
                for k in range(1, 8)) + 0.05 * rng.standard_normal(n)
    elif kind == "babble":
        if not speech:
            raise ValueError("babble noise needs speech clips")
        x = np.zeros(n)
        for i in rng.choice(len(speech), size=min(6, len(speech)), replace=False):
            u = speech[i][::-1]
            u = u[:n]
            at = int(rng.integers(0, n - len(u) + 1))
            x[at: at + len(u)] += u / (np.sqrt(np.mean(u**2)) + 1e-9)
        x += 1e-3 * rng.standard_normal(n)
    else:
        raise ValueError(f"unknown noise {kind!r}; noises: {', '.join(NOISES)}")
    x = np.asarray(x, dtype=np.float64)
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def mix_at_snr(speech: np.ndarray, noise_: np.ndarray,
               snr_db: float) -> tuple[np.ndarray, np.ndarray]:
    """(speech + scaled noise, the scaled noise): the noise scaled so that 10 log10(sum
    speech^2 / sum noise^2) over the clip is ``snr_db``."""
    ps = float(np.sum(speech.astype(np.float64) ** 2))
    pn = float(np.sum(noise_.astype(np.float64) ** 2)) + 1e-20
    scaled = noise_ * np.sqrt(ps / (pn * 10 ** (snr_db / 10)))
    return speech + scaled, scaled


def trim(x: np.ndarray, rel: float = 0.003) -> np.ndarray:
    """The clip without its leading and trailing near-silence (below ``rel`` of the peak:
    -50 dB, low enough to keep a final /s/ or /f/)."""
    loud = np.flatnonzero(np.abs(x) > rel * (np.abs(x).max() + 1e-12))
    return x[loud[0]: loud[-1] + 1] if len(loud) else x[:0]


def place(x: np.ndarray, length: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """``x`` at a random offset (a time shift) in ``length`` samples of silence; a longer clip
    keeps its middle ``length`` samples. Returns the clip and the offset (negative: cropped)."""
    out = np.zeros(length, dtype=np.float64)
    if len(x) >= length:
        start = (len(x) - length) // 2
        out[:] = x[start: start + length]
        return out, -start
    at = int(rng.integers(0, length - len(x) + 1))
    out[at: at + len(x)] = x
    return out, at
