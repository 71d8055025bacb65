"""Generated dataset fixtures in the official ESC-50 / UrbanSound8K / GTZAN layouts, from real FSDD audio.

Each builder resamples and concatenates bundled FSDD clips to the dataset's rate and duration, writes the
official folder structure and metadata, and can plant bad files (corrupt, empty, missing, stereo, odd rate,
too short) so tests see the pipeline meet them.
"""

from __future__ import annotations

import shutil

from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import soxr

FSDD = Path(__file__).resolve().parent.parent / "data" / "fsdd-mini" / "recordings"


def fsdd_wave(index: int, rate: int, seconds: float) -> np.ndarray:
    """Real speech: FSDD clips (digit ``index % 10`` first) resampled to ``rate``, tiled to ``seconds``."""
    files = sorted(FSDD.glob(f"{index % 10}_*.wav"))
    pieces, total, k = [], 0, index // 10
    need = int(rate * seconds)
    while total < need:
        audio, sr = sf.read(files[k % len(files)], dtype="float32")
        audio = soxr.resample(audio, sr, rate)
        pieces.append(audio)
        total += len(audio)
        k += 1
    return np.concatenate(pieces)[:need].astype(np.float32)


def corrupt(path: Path) -> None:
    """A file with a .wav name whose bytes are not audio."""
    path.write_bytes(b"this is not a RIFF file at all" * 10)


def make_esc50(root: Path, clips_per_fold: int = 4, seconds: float = 5.0, rate: int = 44100,
               bad_files: bool = False, missing_file: bool = False) -> Path:
    """ESC-50 layout with ``clips_per_fold`` clips in each of the 5 folds; targets 0, 1, 10, 11 (0 and 10 are
    ESC-10 classes: dog, rooster... here just their numbers) cycled. ``bad_files`` adds a corrupt and an
    empty file (content problems: rejected); ``missing_file`` a CSV row whose file does not exist (an I/O
    problem: the run fails)."""
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    targets = [0, 1, 10, 11]
    names = {0: "dog", 1: "rooster", 10: "rain", 11: "sea_waves"}
    esc10 = {0: True, 1: True, 10: True, 11: False}
    rows = []
    for fold in range(1, 6):
        for i in range(clips_per_fold):
            target = targets[i % len(targets)]
            src = f"{1000 + fold * 10 + i}"
            name = f"{fold}-{src}-A-{target}.wav"
            sf.write(root / "audio" / name, fsdd_wave(fold * 7 + i, rate, seconds), rate)
            rows.append({"filename": name, "fold": fold, "target": target, "category": names[target],
                         "esc10": esc10[target], "src_file": src, "take": "A"})
    kinds = [("corrupt", 1), ("empty", 2)] * bad_files + [("missing", 3)] * missing_file
    for kind, fold in kinds:
        name = f"{fold}-9{fold}-A-0.wav"
        if kind == "corrupt":
            corrupt(root / "audio" / name)
        elif kind == "empty":
            (root / "audio" / name).write_bytes(b"")
        rows.append({"filename": name, "fold": fold, "target": 0, "category": "dog", "esc10": True,
                     "src_file": f"9{fold}", "take": "A"})
    pd.DataFrame(rows).to_csv(root / "meta" / "esc50.csv", index=False)
    return root


US8K_CLASSES = ["air_conditioner", "car_horn", "children_playing", "dog_bark", "drilling",
                "engine_idling", "gun_shot", "jackhammer", "siren", "street_music"]


def make_us8k(root: Path, clips_per_fold: int = 2) -> Path:
    """UrbanSound8K layout over 10 folds. Odd cases as in the real data: stereo 48 kHz, 8-bit-ish 11,025 Hz,
    and a clip of only 300 samples (shorter than one FFT window)."""
    (root / "metadata").mkdir(parents=True)
    rows = []
    for fold in range(1, 11):
        (root / "audio" / f"fold{fold}").mkdir(parents=True)
        for i in range(clips_per_fold):
            class_id = (fold + i) % 10
            fs_id = 100 + fold * 10 + i
            name = f"{fs_id}-{class_id}-0-{i}.wav"
            path = root / "audio" / f"fold{fold}" / name
            if fold == 1 and i == 0:  # stereo at 48 kHz
                wave = fsdd_wave(fold + i, 48000, 1.0)
                sf.write(path, np.stack([wave, 0.5 * wave], axis=1), 48000)
            elif fold == 2 and i == 0:  # odd sample rate
                sf.write(path, fsdd_wave(fold + i, 11025, 1.5), 11025)
            elif fold == 3 and i == 0:  # shorter than one FFT window (2205 samples at 22.05 kHz)
                sf.write(path, fsdd_wave(fold + i, 22050, 300 / 22050), 22050)
            else:
                sf.write(path, fsdd_wave(fold * 3 + i, 44100, 2.0), 44100, subtype="PCM_24")
            rows.append({"slice_file_name": name, "fsID": fs_id, "start": 0.0, "end": 1.0, "salience": 1,
                         "fold": fold, "classID": class_id, "class": US8K_CLASSES[class_id]})
    pd.DataFrame(rows).to_csv(root / "metadata" / "UrbanSound8K.csv", index=False)
    return root


GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")


def make_gtzan(root: Path, per_genre: int = 5, seconds: float = 3.0, folder: str = "genres") -> Path:
    """GTZAN layout ``<folder>/<genre>/<genre>.000NN.wav``; jazz.00054.wav is unreadable, as in the public copy."""
    for g, genre in enumerate(GENRES):
        (root / folder / genre).mkdir(parents=True)
        for i in range(per_genre):
            sf.write(root / folder / genre / f"{genre}.{i:05d}.wav", fsdd_wave(g + 10 * i, 22050, seconds), 22050)
    corrupt(root / folder / "jazz" / "jazz.00054.wav")
    return root


PAPER_MODELS = ("densenet201", "resnet50", "inception_v3")


def make_paper_plan(out: Path, models: tuple[str, ...] = PAPER_MODELS, ablations: bool = True) -> Path:
    """``plans/paper.yaml`` made runnable offline: generated ESC-50 / US8K / GTZAN layouts as its roots,
    torchvision-format ImageNet-shaped weight files (random values: a state-dict round trip, since real
    weights cannot be fetched here) as its weights, CPU resources, storage under ``out``. Everything else,
    the paper's split and augmentation included, is the shipped plan's."""
    import torch
    import torchvision
    import yaml

    roots = {"esc50": make_esc50(out / "ESC-50-master", clips_per_fold=8, seconds=2.0),
             "us8k": make_us8k(out / "UrbanSound8K", clips_per_fold=4),
             "gtzan": make_gtzan(out / "gtzan", per_genre=5, seconds=3.0)}
    plan = yaml.safe_load((Path(__file__).parent.parent / "plans" / "paper.yaml").read_text())
    weights = {}
    for name in models:
        kwargs = {"aux_logits": True, "init_weights": False} if name == "inception_v3" else {}
        weights[name] = str(out / f"{name}.pth")
        torch.save(getattr(torchvision.models, name)(weights=None, **kwargs).state_dict(), weights[name])
    for name, ds in plan["datasets"].items():
        ds["preprocess"]["root"] = str(roots[name])
    plan.update(models=list(models), weights=weights, download_weights=False, storage=str(out / "runs"),
                resources={"num_workers": 1, "cpus_per_worker": 1, "gpus_per_worker": 0})
    if not ablations:
        plan.pop("ablations", None)
    path = out / "paper.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


def seed_dataset(version_uri: str, storage: Path, plan_name: str) -> Path:
    """Copy a finished dataset version to where a plan called ``plan_name`` on ``storage`` builds its
    datasets. A sweep whose plan asks for the same preprocessing then finds it (same settings, same version
    name) and reuses it, as it would on a rerun, instead of featurizing the same clips again."""
    dest = storage / plan_name / "datasets" / Path(version_uri).name
    shutil.copytree(version_uri, dest)
    return dest
