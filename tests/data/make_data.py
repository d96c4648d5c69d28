"""Regenerate the realistic corpus inputs in this folder (not run by the tests).

Needs Pillow and the espeak-ng program; see README.md in this folder for the sources.
Usage: python tests/data/make_data.py PHOTO.jpg
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
SENTENCE = "Real models give real answers. Is the board ready?"


def make_images(photo: Path) -> None:
    im = Image.open(photo).convert("RGB")                    # 720 x 477
    board = im.resize((360, 240), Image.LANCZOS)
    label = im.crop((10, 326, 188, 366))                      # the "STM32F3DISCOVERY" sticker
    np.savez_compressed(HERE / "stm32_board.npz", image=np.asarray(board, np.uint8))
    np.savez_compressed(HERE / "stm32_label.npz", image=np.asarray(label, np.uint8))


def make_speech() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", "en", "-s", "150", "-w", str(raw), SENTENCE], check=True)
        with wave.open(str(raw)) as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float64)
    n16 = int(round(len(pcm) * 16000 / rate))                 # linear resampling to 16 kHz
    pcm16 = np.interp(np.arange(n16) * rate / 16000, np.arange(len(pcm)), pcm)
    silence = np.zeros(8000)                                  # 0.5 s of silence each side
    clip = np.concatenate([silence, pcm16, silence]).round().clip(-32768, 32767).astype("<i2")
    with wave.open(str(HERE / "speech_16k.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(clip.tobytes())


if __name__ == "__main__":
    make_images(Path(sys.argv[1]))
    make_speech()
