"""Speech synthesised with espeak-ng (a Debian package: ``./scripts/system_deps.sh espeak-ng``
or ``apt-get install espeak-ng``), for the synthetic speech datasets (``kws``, the enhancement
pairs). The program is called as a subprocess, several at a time (one per core); its audio is
read from stdout (16-bit WAV, 22.05 kHz) and resampled to 16 kHz with numpy.

A **speaker** is an English accent (the espeak-ng voices of language ``en*`` that synthesise
here: mbrola voices need the mbrola program and are skipped when it is absent) with a voice
variant (``+f3``, ``+klatt``, ... or none). Some variants sound exactly like others (e.g. a
name espeak-ng resolves to the same parameters): every speaker says the same probe text once
and speakers whose audio hashes equal an earlier one's are dropped as duplicates.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from xml.sax.saxutils import escape as xml_escape

import numpy as np

from edgernn.data.audio import SR, resample, trim
from edgernn.errors import EdgeRNNError

INSTALL_HINT = "run ./scripts/system_deps.sh espeak-ng (as root), or apt-get install espeak-ng"
PROBE_TEXT = "yes no up down left right"
Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass(frozen=True, order=True)
class Speaker:
    accent: str  # espeak-ng voice file, e.g. gmw/en-US
    variant: str = ""  # variant file name, e.g. f3 ("" = the voice's own)

    @property
    def voice(self) -> str:
        return f"{self.accent}+{self.variant}" if self.variant else self.accent

    @property
    def name(self) -> str:
        return self.voice


def program(dataset: str = "synthetic speech") -> str:
    """The espeak-ng executable, or a one-line error naming the install step."""
    exe = os.environ.get("EDGERNN_ESPEAK") or shutil.which("espeak-ng")
    if not exe or not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        raise EdgeRNNError(f"{dataset} is synthesised with espeak-ng, which is not installed: "
                           f"{INSTALL_HINT}")
    return exe


def available() -> bool:
    try:
        program()
    except EdgeRNNError:
        return False
    return True


@cache
def version() -> str:
    """espeak-ng's version, e.g. ``1.51`` (its whole ``--version`` line if that has none)."""
    out = subprocess.run([program(), "--version"], capture_output=True, text=True,
                         check=False).stdout.strip()
    m = re.search(r"text-to-speech:\s*(\S+)", out)
    return m.group(1) if m else out


def _voice_table(arg: str) -> list[tuple[str, str]]:
    """(language, file) of each voice ``espeak-ng --voices=ARG`` lists; a file name may hold
    a space (``!v/Mr serious``): it runs to the "(other languages)" column."""
    out = subprocess.run([program(), f"--voices={arg}"], capture_output=True, text=True,
                         check=False).stdout
    rows = []
    for line in out.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 5:
            continue
        file = []
        for c in cols[4:]:
            if c.startswith("("):
                break
            file.append(c)
        rows.append((cols[1], " ".join(file)))
    return rows


@cache
def accents() -> tuple[str, ...]:
    """espeak-ng's English voices (language ``en*``) by voice file (``gmw/en-US``,
    ``mb/mb-us1``): ``-v LANGUAGE+VARIANT`` ignores the variant for some language names, the
    file name never does."""
    return tuple(dict.fromkeys(file for lang, file in _voice_table("en")
                               if lang.startswith("en") and not file.startswith("!v/")))


@cache
def variants() -> tuple[str, ...]:
    """Every voice variant espeak-ng has (``!v/NAME`` files; names are case-sensitive)."""
    return tuple(dict.fromkeys(file.split("/", 1)[1] for _, file in _voice_table("variant")
                               if file.startswith("!v/")))


def read_wav(data: bytes) -> tuple[np.ndarray, int]:
    """16-bit mono PCM from espeak-ng's WAV on stdout (whose size fields are placeholders)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise EdgeRNNError("espeak-ng wrote no WAV audio")
    sr = int.from_bytes(data[24:28], "little")
    at = data.find(b"data", 12)
    if at < 0:
        raise EdgeRNNError("espeak-ng wrote a WAV without a data chunk")
    pcm = data[at + 8:]
    return np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2"), sr


def speak_raw(speaker: Speaker, text: str, speed: int | None = None, pitch: int | None = None,
              ssml: bool = False, strict: bool = True) -> tuple[np.ndarray, int]:
    """One espeak-ng call: int16 samples at espeak-ng's rate. A call that fails or says
    nothing is a one-line error (``strict``), else empty samples (probing voices)."""
    cmd = [program(), "-v", speaker.voice, "--stdout"]
    if speed is not None:
        cmd += ["-s", str(int(speed))]
    if pitch is not None:
        cmd += ["-p", str(int(pitch))]
    if ssml:
        cmd += ["-m"]
    why = ""
    try:
        res = subprocess.run([*cmd, "--", text], capture_output=True, check=False, timeout=60)
        if res.returncode == 0 and len(res.stdout) > 44:
            return read_wav(res.stdout)
        lines = res.stderr.decode(errors="replace").strip().splitlines()
        why = f"exit {res.returncode}" + (f": {lines[-1]}" if lines else ", no audio")
    except (OSError, subprocess.TimeoutExpired) as e:
        why = f"{type(e).__name__}: {e}"
    if strict:
        raise EdgeRNNError(f"espeak-ng -v {speaker.voice} failed on {text[:40]!r} ({why})")
    return np.zeros(0, np.int16), SR


def pmap(fn: Callable, items: Sequence, progress: Progress | None = None, phase: str = "",
         workers: int | None = None, every: int = 16) -> list:
    """``[fn(item) for item in items]`` with one espeak-ng process per core at a time (threads
    that wait on subprocesses), in order; ``progress(phase, done, total)`` as they finish."""
    workers = workers or os.cpu_count() or 2
    out: list = [None] * len(items)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futs = {pool.submit(fn, it): i for i, it in enumerate(items)}
        for done, fut in enumerate(as_completed(futs), 1):
            out[futs[fut]] = fut.result()
            if progress and (done % every == 0 or done == len(items)):
                progress(phase, done, len(items))
    return out


PROBE_SETTINGS: tuple[tuple[int | None, int | None], ...] = ((None, None), (160, 40))


def distinct_speakers(candidates: Sequence[Speaker], progress: Progress | None = None
                      ) -> tuple[list[Speaker], dict[Speaker, Speaker], list[Speaker]]:
    """(kept, dropped -> the earlier identical speaker, unavailable): each candidate says
    ``PROBE_TEXT`` at each of ``PROBE_SETTINGS`` (speed, pitch: espeak-ng's defaults, and set
    explicitly as the datasets do); audio equal (sha256 of the samples) to an earlier
    speaker's at the same setting means the same voice. Voices that produce no audio (e.g.
    mbrola without the mbrola program) are unavailable."""
    def probe(s: Speaker) -> tuple[str, ...] | None:
        out = []
        for speed, pitch in PROBE_SETTINGS:
            pcm, sr = speak_raw(s, PROBE_TEXT, speed, pitch, strict=False)
            if not len(pcm):
                return None
            out.append(hashlib.sha256(pcm.tobytes() + str(sr).encode()).hexdigest())
        return tuple(out)

    # a voice that cannot speak (mbrola without its program) fails with any variant: try each
    # voice once first
    voices = sorted({s.accent for s in candidates})
    works = dict(zip(voices, pmap(lambda a: len(speak_raw(Speaker(a), "yes", strict=False)[0]) > 0,
                                  voices), strict=True))
    usable = [s for s in candidates if works[s.accent]]
    hashes = dict(zip(usable, pmap(probe, usable, progress, "checking espeak-ng voices"),
                      strict=True))
    first: list[dict[str, Speaker]] = [{} for _ in PROBE_SETTINGS]
    kept, dropped, unavailable = [], {}, []
    for s in candidates:
        hs = hashes.get(s)
        if hs is None:
            unavailable.append(s)
            continue
        same = next((f[h] for f, h in zip(first, hs, strict=True) if h in f), None)
        if same is not None:
            dropped[s] = same
            continue
        for f, h in zip(first, hs, strict=True):
            f[h] = s
        kept.append(s)
    return kept, dropped, unavailable


def speak_words(speaker: Speaker, words: Sequence[str], speed: int, pitch: int,
                gap_ms: int = 400) -> list[np.ndarray]:
    """Each word as float32 audio at 16 kHz, trimmed of silence: one espeak-ng call saying all
    of them with ``gap_ms`` breaks (SSML), cut at the breaks; when the cut does not find
    exactly one stretch of sound per word, each word is said on its own instead."""
    text = "<speak>" + f' <break time="{gap_ms}ms"/> '.join(xml_escape(w) for w in words) + \
        "</speak>"
    pcm, sr = speak_raw(speaker, text, speed, pitch, ssml=True)
    parts = split_at_pauses(pcm, sr, min_pause_s=gap_ms / 2000)
    if len(parts) != len(words):
        parts = [speak_raw(speaker, w, speed, pitch)[0] for w in words]
    out = []
    for p in parts:
        x = p.astype(np.float32) / 32768.0
        out.append(trim(resample(x, sr)))
    return out


def split_at_pauses(pcm: np.ndarray, sr: int, min_pause_s: float = 0.2,
                    rel: float = 0.01) -> list[np.ndarray]:
    """The stretches of sound between pauses: 10 ms frames whose RMS is under ``rel`` of the
    loudest frame's, ``min_pause_s`` or longer, cut the clip; stretches under 40 ms are
    dropped (clicks)."""
    if len(pcm) == 0:
        return []
    hop = sr // 100
    n = len(pcm) // hop
    if n == 0:
        return []
    fr = pcm[: n * hop].astype(np.float64).reshape(n, hop)
    rms = np.sqrt(np.mean(fr**2, axis=1))
    quiet = rms < rel * rms.max()
    need = max(1, int(round(min_pause_s * 100)))
    parts, start, k = [], None, 0
    while k < n:
        if quiet[k]:
            j = k
            while j < n and quiet[j]:
                j += 1
            if j - k >= need or j == n:
                if start is not None:
                    parts.append((start, k))
                    start = None
            elif start is None:
                start = k
            k = j
        else:
            if start is None:
                start = k
            k += 1
    if start is not None:
        parts.append((start, n))
    return [pcm[a * hop: b * hop] for a, b in parts if b - a >= 4]


def to_16k(pcm: np.ndarray, sr: int) -> np.ndarray:
    return resample(pcm.astype(np.float32) / 32768.0, sr, SR)


# ---- the speaker pool, checked once per espeak-ng install and cached ------------------------

def cache_root() -> Path:
    """Where generated datasets are cached: ``$XDG_CACHE_HOME/edgernn/datasets`` (CI sets
    XDG_CACHE_HOME to its one cache folder), else ``~/.cache/edgernn/datasets``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgernn" / "datasets"


@dataclass
class Pool:
    kept: list[Speaker]
    dropped: dict[Speaker, Speaker]  # identical audio to the kept speaker
    unavailable: list[Speaker]


def speaker_pool(accent_list: Sequence[str] | None = None,
                 variant_list: Sequence[str] | None = None,
                 progress: Progress | None = None, cache_dir: Path | None = None) -> Pool:
    """The distinct speakers among ``accent_list`` x ``variant_list`` (default: every English
    voice and every variant, plus each voice's own ""), checked by ``distinct_speakers`` once
    per espeak-ng version and candidate list, then read from the cache."""
    acc = tuple(accent_list) if accent_list is not None else accents()
    var = tuple(variant_list) if variant_list is not None else ("", *variants())
    cands = [Speaker(a, v) for a in acc for v in var]
    key = hashlib.sha256(json.dumps([version(), PROBE_TEXT, PROBE_SETTINGS,
                                     [[s.accent, s.variant] for s in cands]])
                         .encode()).hexdigest()[:16]
    path = (cache_dir or cache_root()) / f"espeak-speakers-{key}.json"
    if path.is_file():
        d = json.loads(path.read_text())
        return Pool([Speaker(*s) for s in d["kept"]],
                    {Speaker(*a): Speaker(*b) for a, b in d["dropped"]},
                    [Speaker(*s) for s in d["unavailable"]])
    kept, dropped, unavailable = distinct_speakers(cands, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.part")
    tmp.write_text(json.dumps({
        "espeak_ng": version(),
        "kept": [[s.accent, s.variant] for s in kept],
        "dropped": [[[a.accent, a.variant], [b.accent, b.variant]] for a, b in dropped.items()],
        "unavailable": [[s.accent, s.variant] for s in unavailable]}, indent=0))
    tmp.replace(path)
    return Pool(kept, dropped, unavailable)
