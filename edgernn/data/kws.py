"""``kws``: a synthetic speech keyword-spotting set, made with espeak-ng on this machine at
first use and cached.

The 10 command words of keyword spotting (yes, no, up, down, left, right, on, off, stop, go),
``unknown`` (other words) and ``silence`` (noise only). Every distinct espeak-ng speaker (an
English voice with a variant; identical-sounding ones dropped, see ``edgernn.data.espeak``)
says a seeded random subset of the command words, and some speakers one unknown word, each
at the speaker's own random speed and pitch; each word becomes a 1 s clip at 16 kHz: a random
level, a random time shift, and noise (white, pink, brown, mains hum or babble) at one of
several SNRs. Features: 40 log-mel bands x 101 frames (25 ms, 10 ms hop; ``edgernn.data.audio``);
the dataset's time steps stack ``FRAMES_PER_STEP`` consecutive frames (``audio.stack_frames``:
2 frames, 50 steps x 80 features, 20 ms per step), as low-frame-rate speech models read it:
half the recurrent steps to train and to run, and the LSTM reached 0.894-0.914 (5 seeds, mean
0.904) where it stopped near 0.89 at 101 steps (issue 25's note).

The split is **speaker-disjoint**: whole variants (a voice timbre, with every accent it is
used with; variants derived from one another, e.g. iven/iven2/iven3, together) are held out for
the test set, so no test voice is heard in training, not even as babble. Everything is drawn
from one seed; espeak-ng's output is deterministic, so the same configuration and espeak-ng
version give the same arrays. The cache file is
``<cache_root>/kws-<key>.npz`` (features stored as float16), ``key`` hashing the configuration
and the espeak-ng version.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgernn.data import audio, espeak
from edgernn.data.base import Dataset, register
from edgernn.errors import EdgeRNNError

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN_WORDS = ("bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree",
                 "wow", "zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                 "nine", "backward", "forward", "follow", "learn", "visual")
UNKNOWN, SILENCE = "unknown", "silence"
CACHE_VERSION = 3  # bump when the clips change for the same configuration
CLIP = audio.SR  # 1 s
FRAMES_PER_STEP = 2  # consecutive 10 ms frames per time step of the dataset (see above)


@dataclass(frozen=True)
class KwsConfig:
    """What ``build`` makes. ``accents``/``variants`` None: every English espeak-ng voice and
    every variant (plus each voice's own, ""). Speeds in words per minute and pitches (0-99)
    are drawn uniformly from the closed ranges; SNRs and noises uniformly from the lists."""

    keywords: tuple[str, ...] = KEYWORDS
    unknown_words: tuple[str, ...] = UNKNOWN_WORDS
    accents: tuple[str, ...] | None = None
    variants: tuple[str, ...] | None = None
    keywords_per_speaker: int = 10
    speeds: tuple[int, int] = (130, 220)
    pitches: tuple[int, int] = (25, 75)
    snrs: tuple[float, ...] = (25.0, 15.0, 10.0, 5.0)
    noises: tuple[str, ...] = audio.NOISES
    speech_dbfs: tuple[float, float] = (-32.0, -16.0)  # RMS of the spoken part
    silence_dbfs: tuple[float, float] = (-55.0, -30.0)  # RMS of a noise-only clip
    test_share: float = 0.2  # of the variants, held out
    seed: int = 0

    @property
    def classes(self) -> list[str]:
        return [*self.keywords, UNKNOWN, SILENCE]

    def key(self) -> str:
        blob = json.dumps([CACHE_VERSION, espeak.version(), asdict(self)], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class KwsData:
    x_train: np.ndarray  # [N, 101, 40] float32 log-mel
    y_train: np.ndarray  # [N] int64 class ids (KwsConfig.classes)
    x_test: np.ndarray
    y_test: np.ndarray
    speaker_train: np.ndarray  # [N] str: the espeak-ng voice (silence: the voice it is filed under)
    speaker_test: np.ndarray
    snr_train: np.ndarray  # [N] float: the clip's SNR in dB (nan for silence)
    snr_test: np.ndarray
    meta: dict  # classes, speakers kept/dropped/unavailable, held-out variants, seconds, ...
    audio_train: np.ndarray | None = None  # [N, 16000] mixes (keep_audio only)
    audio_test: np.ndarray | None = None
    speech_train: np.ndarray | None = None  # [N, 16000] the speech alone, as mixed
    speech_test: np.ndarray | None = None
    path: Path | None = None
    extra: dict = field(default_factory=dict)


# ---- progress --------------------------------------------------------------------------------

class _Bar:
    """A rich progress bar on stderr, one task per phase."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.p = Progress(TextColumn("{task.description}"), BarColumn(),
                          TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                          console=Console(stderr=True), transient=False)
        self.tasks: dict[str, int] = {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase not in self.tasks:
            self.tasks[phase] = self.p.add_task(phase, total=total)
        self.p.update(self.tasks[phase], completed=done, total=total)

    def __enter__(self):
        self.p.start()
        return self

    def __exit__(self, *exc) -> None:
        self.p.stop()


# ---- building --------------------------------------------------------------------------------

def family(variant: str) -> str:
    """Variants made from one another share a family: the name without its trailing number
    when what is left is a name (iven, iven2, iven3 -> iven; klatt2 -> klatt; robosoft5 ->
    robosoft), while m1, m2, f3 (a letter and a number) are each their own."""
    stem = re.sub(r"\d+$", "", variant)
    return stem if len(stem) > 2 else variant


def split_variants(variants: Sequence[str], share: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, test) variant names, whole families (``family``) held out: ``ceil(share * n)``
    of the n families (at least one, and at least one kept for training), chosen with
    ``seed``."""
    names = sorted(set(variants))
    fams = sorted({family(n) for n in names})
    if len(fams) < 2:
        raise EdgeRNNError(f"a speaker-disjoint split needs at least 2 distinct voice variants, "
                           f"got {names}")
    k = min(len(fams) - 1, max(1, math.ceil(share * len(fams))))
    order = np.random.default_rng([seed, 1]).permutation(len(fams))
    held = {fams[i] for i in order[:k]}
    test = [n for n in names if family(n) in held]
    return [n for n in names if n not in test], test


def _level(x: np.ndarray, dbfs: float) -> np.ndarray:
    rms = np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-12
    return x * (10 ** (dbfs / 20) / rms)


def build(cfg: KwsConfig = KwsConfig(), progress: espeak.Progress | None = None,
          keep_audio: bool = False, cache_dir: Path | None = None) -> KwsData:
    """Synthesise, mix and featurise the set (no cache read or write here: see ``load``)."""
    t0 = time.perf_counter()
    espeak.program("dataset 'kws'")
    pool = espeak.speaker_pool(cfg.accents, cfg.variants, progress, cache_dir)
    if not pool.kept:
        raise EdgeRNNError("no espeak-ng voice synthesised any audio; check `espeak-ng -v en "
                           "hello --stdout | wc -c`")
    train_v, test_v = split_variants([s.variant for s in pool.kept], cfg.test_share, cfg.seed)
    test_set = set(test_v)
    rng = np.random.default_rng([cfg.seed, 2])
    kps = min(cfg.keywords_per_speaker, len(cfg.keywords))
    share = kps / len(cfg.keywords)  # unknown and silence as frequent as one command word
    plan = []  # (speaker, [(word, class id)], speed, pitch, with silence)
    for s in pool.kept:
        pick = sorted(rng.choice(len(cfg.keywords), size=kps, replace=False))
        words = [(cfg.keywords[i], int(i)) for i in pick]
        if cfg.unknown_words and rng.random() < share:
            words.append((cfg.unknown_words[int(rng.integers(len(cfg.unknown_words)))],
                          len(cfg.keywords)))
        speed = int(rng.integers(cfg.speeds[0], cfg.speeds[1] + 1))
        pitch = int(rng.integers(cfg.pitches[0], cfg.pitches[1] + 1))
        plan.append((s, words, speed, pitch, bool(rng.random() < share)))

    said = espeak.pmap(lambda p: espeak.speak_words(p[0], [w for w, _ in p[1]], p[2], p[3]),
                       plan, progress, "synthesising speech (espeak-ng)")

    # clips: (speaker, class, utterance or None for silence)
    clips: list[tuple[espeak.Speaker, int, np.ndarray | None]] = []
    for (s, words, _, _, silence), utts in zip(plan, said, strict=True):
        for (_, cls), u in zip(words, utts, strict=True):
            if len(u) >= 160:  # at least 10 ms of sound
                clips.append((s, cls, u))
        if silence:
            clips.append((s, len(cfg.keywords) + 1, None))
    babble = {side: [u for s, _, u in clips if u is not None and (s.variant in test_set) == side]
              for side in (False, True)}

    n = len(clips)
    mixes = np.zeros((n, CLIP), np.float32)
    speech = np.zeros((n, CLIP), np.float32) if keep_audio else None
    snr = np.full(n, np.nan)
    noise_kind = []
    for i, (s, _, u) in enumerate(clips):
        r = np.random.default_rng([cfg.seed, 3, i])
        kind = cfg.noises[int(r.integers(len(cfg.noises)))]
        nz = audio.noise(kind, CLIP, r, babble[s.variant in test_set])
        if u is None:
            mix = _level(nz, r.uniform(*cfg.silence_dbfs))
            clean = np.zeros(CLIP)
        else:
            placed, _ = audio.place(_level(u, r.uniform(*cfg.speech_dbfs)), CLIP, r)
            snr[i] = cfg.snrs[int(r.integers(len(cfg.snrs)))]
            mix, _ = audio.mix_at_snr(placed, nz, snr[i])
            clean = placed
        peak = float(np.abs(mix).max())
        if peak > 0.99:  # no clipping: scale speech and noise alike (the SNR stays)
            mix, clean = mix * (0.99 / peak), clean * (0.99 / peak)
        mixes[i] = mix
        if speech is not None:
            speech[i] = clean
        noise_kind.append(kind)
        if progress and (i % 64 == 63 or i == n - 1):
            progress("mixing noise", i + 1, n)

    feats = np.concatenate(espeak.pmap(lambda a: audio.log_mel(mixes[a: a + 128]),
                                       range(0, n, 128), progress, "log-mel features", every=1))

    y = np.array([c for _, c, _ in clips], np.int64)
    spk = np.array([s.voice for s, _, _ in clips])
    is_test = np.array([s.variant in test_set for s, _, _ in clips])
    idx = {side: np.random.default_rng([cfg.seed, 4, int(side)]).permutation(
        np.flatnonzero(is_test == side)) for side in (False, True)}
    tr, te = idx[False], idx[True]
    meta = {
        "classes": cfg.classes, "config": asdict(cfg), "espeak_ng": espeak.version(),
        "speakers": [s.voice for s in pool.kept],
        "dropped": {a.voice: b.voice for a, b in pool.dropped.items()},
        "unavailable_voices": sorted({s.accent for s in pool.unavailable}),
        "train_variants": train_v, "test_variants": test_v,
        "noise_kinds": noise_kind, "seconds": round(time.perf_counter() - t0, 1),
        "clips": n,
    }
    return KwsData(
        feats[tr], y[tr], feats[te], y[te], spk[tr], spk[te], snr[tr], snr[te], meta,
        mixes[tr] if keep_audio else None, mixes[te] if keep_audio else None,
        speech[tr] if speech is not None else None, speech[te] if speech is not None else None)


# ---- the cache -------------------------------------------------------------------------------

def cache_path(cfg: KwsConfig = KwsConfig(), cache_dir: Path | None = None) -> Path:
    return (cache_dir or espeak.cache_root()) / f"kws-{cfg.key()}.npz"


def _save(path: Path, d: KwsData) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.part")
    with open(tmp, "wb") as f:
        np.savez(f, x_train=d.x_train.astype(np.float16), y_train=d.y_train,
                 x_test=d.x_test.astype(np.float16), y_test=d.y_test,
                 speaker_train=d.speaker_train, speaker_test=d.speaker_test,
                 snr_train=d.snr_train, snr_test=d.snr_test, meta=np.array(json.dumps(d.meta)))
    tmp.replace(path)


def _read(path: Path) -> KwsData:
    with np.load(path, allow_pickle=False) as f:
        return KwsData(f["x_train"].astype(np.float32), f["y_train"],
                       f["x_test"].astype(np.float32), f["y_test"],
                       f["speaker_train"], f["speaker_test"], f["snr_train"], f["snr_test"],
                       json.loads(str(f["meta"])), path=path)


def load(cfg: KwsConfig = KwsConfig(), progress: espeak.Progress | None = None,
         cache_dir: Path | None = None) -> KwsData:
    """The cached set, or build it (with a progress bar on stderr unless ``progress`` is
    given), cache it and return it as read back from the cache (float16-rounded features, so
    the first use and later ones see the same numbers)."""
    espeak.program("dataset 'kws'")
    path = cache_path(cfg, cache_dir)
    if path.is_file():
        try:
            return _read(path)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache file is rebuilt
    if progress is None:
        print(f"kws: synthesising the keyword-spotting set with espeak-ng (once; cached in "
              f"{path})", file=sys.stderr)
        with _Bar() as bar:
            d = build(cfg, bar, cache_dir=cache_dir)
    else:
        d = build(cfg, progress, cache_dir=cache_dir)
    _save(path, d)
    return _read(path)


def status(cfg: KwsConfig = KwsConfig()) -> str | None:
    """What ``edgernn datasets`` says instead of loading the set when loading would synthesise
    it (or cannot); None when it is cached."""
    try:
        espeak.program("dataset 'kws'")
    except EdgeRNNError as e:
        return f"synthetic speech; not available: {e}"
    path = cache_path(cfg)
    if path.is_file():
        return None
    return (f"synthetic speech (espeak-ng): keyword spotting, {len(cfg.classes)} classes "
            f"({', '.join(cfg.keywords)}, {UNKNOWN}, {SILENCE}), 40 log-mel x 101 frames "
            f"({FRAMES_PER_STEP} per step); "
            f"synthesised at first use (about a minute, then cached in {path})")


def to_dataset(d: KwsData, name: str = "kws", frames_per_step: int = FRAMES_PER_STEP) -> Dataset:
    """The cached clips as a ``Dataset``: each time step stacks ``frames_per_step`` frames."""
    m = d.meta
    k = frames_per_step
    x_train, x_test = audio.stack_frames(d.x_train, k), audio.stack_frames(d.x_test, k)
    bands = d.x_train.shape[2]
    cfg = m["config"]
    n_var = len(m["train_variants"]) + len(m["test_variants"])
    accents = sorted({v.split("+")[0] for v in m["speakers"]})
    dropped = len(m["dropped"])
    snrs = "/".join(f"{s:g}" for s in cfg["snrs"])
    n_tr = len(set(d.speaker_train.tolist()))
    n_te = len(set(d.speaker_test.tolist()))
    desc = (f"synthetic speech: keyword spotting, {len(m['classes'])} classes "
            f"({', '.join(cfg['keywords'])}, {UNKNOWN} = {len(cfg['unknown_words'])} other words, "
            f"{SILENCE} = noise only), synthesised with espeak-ng {m['espeak_ng']}"
            f"; {len(m['speakers'])} speakers = {len(accents)} English voices x {n_var} variants "
            f"(those that sound different: {dropped} identical-audio voice/variant pairs dropped), "
            f"speed {cfg['speeds'][0]}-{cfg['speeds'][1]} wpm, pitch {cfg['pitches'][0]}-"
            f"{cfg['pitches'][1]}; 1 s clips at 16 kHz, random level and time shift, "
            f"{'/'.join(cfg['noises'])} noise at {snrs} dB SNR; {bands} log-mel x "
            f"{d.x_train.shape[1]} frames (25 ms, 10 ms hop), {k} frames per step: "
            f"{x_train.shape[1]} steps x {x_train.shape[2]} features; speaker-disjoint split: "
            f"{len(m['test_variants'])} of {n_var} variants "
            f"held out with every accent, related variants (iven/iven2) together ({n_tr} train "
            f"/ {n_te} test speakers); seed {cfg['seed']}")
    return Dataset(
        name, "classify", x_train, d.y_train, x_test, d.y_test, desc, real=False,
        num_classes=len(m["classes"]), class_names=list(m["classes"]),
        feature_names=[f"log_mel_{i}" + (f"_frame{j}" if k > 1 else "")
                       for j in range(k) for i in range(bands)],
        groups_train=np.array([family(s.split("+", 1)[1] if "+" in s else "")
                               for s in d.speaker_train]))  # as the test split groups them


@register("kws", domain="speech",
          source="synthesised on this machine with espeak-ng (Debian package) at first use, "
                 "then cached",
          license="n/a (synthetic; espeak-ng itself is GPL-3.0-or-later)", status=status)
def kws(**kw) -> Dataset:
    """Keyword spotting on synthetic speech (see the module docstring); ``kw`` are
    ``KwsConfig`` fields."""
    return to_dataset(load(KwsConfig(**kw)))


if __name__ == "__main__":  # python -m edgernn.data.kws: build (or find) the cached set
    try:
        data = load()
    except EdgeRNNError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"{data.path}: {len(data.y_train)} train + {len(data.y_test)} test clips; built in "
          f"{data.meta['seconds']} s")
