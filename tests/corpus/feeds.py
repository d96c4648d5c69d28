"""Turn the realistic inputs in tests/data into feeds for the corpus models (numpy only).

Each preprocessing follows the package that ships the model (RapidOCR, silero-vad, magika, ddddocr,
NudeNet, pipecat's smart-turn); where a package uses OpenCV or PIL, a plain bilinear resize stands in.
"""
from __future__ import annotations

import json
import wave
from functools import lru_cache
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1] / "data"
REPO = DATA.parents[1]

#: real files whose bytes magika classifies, with the label it should give each
MAGIKA_FILES = {
    "tests/corpus/fetch.py": "python",
    "tests/data/README.md": "markdown",
    "tests/data/speech_16k.wav": "wav",
    "pyproject.toml": "toml",
}


# ---------------------------------------------------------------- raw inputs

@lru_cache(maxsize=None)
def image(name: str) -> np.ndarray:
    """An RGB uint8 image (H, W, 3) from tests/data/<name>.npz."""
    with np.load(DATA / f"{name}.npz", allow_pickle=False) as z:
        return z["image"]


@lru_cache(maxsize=None)
def speech() -> np.ndarray:
    """The 16 kHz mono speech clip as float32 in [-1, 1]."""
    with wave.open(str(DATA / "speech_16k.wav")) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    return (pcm.astype(np.float32) / 32768.0)


def resize(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize (half-pixel centres, like OpenCV's INTER_LINEAR) of an (H, W, C) image, as float32."""
    h, w = img.shape[:2]
    ys = np.clip((np.arange(height) + 0.5) * h / height - 0.5, 0, h - 1)
    xs = np.clip((np.arange(width) + 0.5) * w / width - 0.5, 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    f = img.astype(np.float32)
    top = f[y0][:, x0] * (1 - fx) + f[y0][:, x1] * fx
    bottom = f[y1][:, x0] * (1 - fx) + f[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


def chw(img: np.ndarray) -> np.ndarray:
    """(H, W, C) -> (1, C, H, W) float32."""
    return np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32)


# ---------------------------------------------------------------- RapidOCR (PP-OCR det / rec / cls)

def ppocr_det() -> list[dict]:
    """The board photo, BGR like OpenCV, resized to multiples of 32, ImageNet-normalised (RapidOCR's DetPreProcess)."""
    bgr = resize(image("stm32_board"), 256, 384)[..., ::-1] / 255.0
    x = (bgr - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    return [{"x": chw(x)}]


def _text_line(height: int, width: int, img: np.ndarray) -> np.ndarray:
    """RapidOCR's rec/cls resize: keep the aspect ratio at `height`, pad right with zeros to `width`, [-1, 1]."""
    h, w = img.shape[:2]
    new_w = min(width, int(np.ceil(height * w / h)))
    line = (resize(img, height, new_w)[..., ::-1] / 255.0 - 0.5) / 0.5
    out = np.zeros((height, width, 3), np.float32)
    out[:, :new_w] = line
    return out


def ppocr_rec() -> list[dict]:
    """The STM32F3DISCOVERY sticker as one text line, 48 x 320."""
    return [{"x": chw(_text_line(48, 320, image("stm32_label")))}]


def ppocr_cls() -> list[dict]:
    """The sticker upright and turned 180 degrees (a batch of 2), 48 x 192: the classifier tells them apart."""
    label = image("stm32_label")
    lines = [_text_line(48, 192, label), _text_line(48, 192, label[::-1, ::-1])]
    return [{"x": np.concatenate([chw(x) for x in lines])}]


def ctc_decode(probs: np.ndarray, characters: list[str]) -> str:
    """Greedy CTC decoding as RapidOCR does it: index 0 is blank, repeats collapse."""
    table = ["blank"] + characters + [" "]
    idx = probs.argmax(-1)
    keep = np.concatenate([[True], idx[1:] != idx[:-1]]) & (idx != 0)
    return "".join(table[i] for i in idx[keep])


# ---------------------------------------------------------------- silero-vad

SILERO_CHUNK, SILERO_CONTEXT = 512, 64


def silero_windows(starts_s=(0.1, 1.0, 1.6, 2.2)) -> np.ndarray:
    """576-sample windows (64 samples of context + a 512-sample chunk) starting at the given seconds."""
    audio = speech()
    return np.stack([audio[int(s * 16000):int(s * 16000) + SILERO_CONTEXT + SILERO_CHUNK] for s in starts_s])


def silero_vad() -> list[dict]:
    """Four windows of the clip (silence and speech) as a batch of 4 fresh streams; sr is a 0-d int64."""
    x = silero_windows()
    return [{"input": x, "state": np.zeros((2, len(x), 128), np.float32), "sr": np.array(16000, np.int64)}]


def silero_stream(n: int | None = None):
    """The clip as silero-vad's OnnxWrapper feeds it: successive 512-sample chunks, each after 64 samples of context.

    Yields the `input` arrays (1, 576); the caller carries `state` from each run's `stateN`.
    """
    audio = speech()
    context = np.zeros(SILERO_CONTEXT, np.float32)
    count = len(audio) // SILERO_CHUNK if n is None else n
    for i in range(count):
        chunk = audio[i * SILERO_CHUNK:(i + 1) * SILERO_CHUNK]
        yield np.concatenate([context, chunk])[None]
        context = chunk[-SILERO_CONTEXT:]


# ---------------------------------------------------------------- magika

def magika_config(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def magika_features(data: bytes, cfg: dict) -> np.ndarray:
    """magika's features: the first and last bytes of a file, whitespace-stripped, padded with 256."""
    beg_size, end_size, block, pad = cfg["beg_size"], cfg["end_size"], cfg["block_size"], cfg["padding_token"]
    assert cfg["mid_size"] == 0
    beg = list(data[:block].lstrip()[:beg_size])
    end = list(data[-block:].rstrip()[-end_size:]) if data else []
    beg = beg + [pad] * (beg_size - len(beg))
    end = [pad] * (end_size - len(end)) + end
    return np.array(beg + end, np.int32)


def magika(cfg: dict) -> list[dict]:
    """Real file bytes from this repository (a Python file, Markdown, the WAV clip, TOML), int32 (4, 2048)."""
    rows = [magika_features((REPO / name).read_bytes(), cfg) for name in MAGIKA_FILES]
    return [{"bytes": np.stack(rows)}]


# ---------------------------------------------------------------- ddddocr

def ddddocr() -> list[dict]:
    """ddddocr's classification input: the sticker in grey, height 64, width by aspect ratio, scaled to [-1, 1]."""
    label = image("stm32_label")
    h, w = label.shape[:2]
    grey = resize(label, 64, int(w * 64 / h)) @ np.array([0.299, 0.587, 0.114], np.float32)  # PIL's "L"
    x = (grey / 255.0 - 0.5) / 0.5
    return [{"input1": x[None, None].astype(np.float32)}]


# ---------------------------------------------------------------- NudeNet (YOLOv8n)

def nudenet() -> list[dict]:
    """The board photo letterboxed onto a 320 x 320 square (NudeNet pads to a square, then resizes), RGB in [0, 1]."""
    img = image("stm32_board")
    h, w = img.shape[:2]
    side = max(h, w)
    square = np.zeros((side, side, 3), np.uint8)
    square[:h, :w] = img
    return [{"images": chw(resize(square, 320, 320) / 255.0)}]


# ---------------------------------------------------------------- smart-turn (Whisper encoder, pipecat)

def _hz_to_mel(f):
    f = np.asarray(f, np.float64)
    lin = f / (200.0 / 3)
    return np.where(f >= 1000, 15.0 + np.log(np.maximum(f, 1e-10) / 1000) / (np.log(6.4) / 27), lin)


def _mel_to_hz(m):
    m = np.asarray(m, np.float64)
    return np.where(m >= 15.0, 1000 * np.exp((np.log(6.4) / 27) * (m - 15.0)), m * 200.0 / 3)


def mel_filters(sr: int = 16000, n_fft: int = 400, n_mels: int = 80) -> np.ndarray:
    """Slaney-style mel filter bank (librosa's default, which Whisper uses), (n_mels, n_fft // 2 + 1)."""
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0), _hz_to_mel(sr / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - freqs[None, :]
    weights = np.maximum(0, np.minimum(-ramps[:-2] / fdiff[:-1, None], ramps[2:] / fdiff[1:, None]))
    return weights * (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]


def whisper_log_mel(audio: np.ndarray, seconds: int = 8) -> np.ndarray:
    """Whisper's log-mel features of the last `seconds` of audio (zero-padded in front, as smart-turn does)."""
    n = seconds * 16000
    audio = np.pad(audio[-n:], (max(0, n - len(audio)), 0)).astype(np.float64)
    window = np.hanning(401)[:-1]                            # periodic Hann, n_fft = 400
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(audio, 200, mode="reflect"), 400)[::160]
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2
    mel = mel_filters() @ power[:-1].T                       # (80, 100 * seconds)
    log = np.log10(np.maximum(mel, 1e-10))
    log = np.maximum(log, log.max() - 8.0)
    return ((log + 4.0) / 4.0).astype(np.float32)


def smart_turn() -> list[dict]:
    """Whisper log-mel of the speech clip, (1, 80, 800)."""
    return [{"input_features": whisper_log_mel(speech())[None]}]


# ---------------------------------------------------------------- ONNX-zoo light models

def zoo(input_name: str) -> list[dict]:
    """The board photo resized to 224 x 224, ImageNet-normalised RGB."""
    x = (resize(image("stm32_board"), 224, 224) / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array(
        [0.229, 0.224, 0.225])
    return [{input_name: chw(x)}]
