"""Helpers for the eval tests (imported via tests/conftest.py's sys.path entry; not a test module).

- `tiny_qwen()`: a ~200K-parameter Qwen2.5-VL built offline (random weights) with the offline
  tokenizer/processor of `data_prep.offline_processor` (no hub access, no torchvision);
- `ScriptedBackend`: a backend whose "model output" is given by the test (a function of the
  request), the legitimate test double for exact behaviour;
- writers of synthetic benchmark files in each public format.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from functools import lru_cache
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

from recipe.ivgr.eval.backends import Backend, GenerationResult

# Small pixel bounds keep the tiny model's prompts short on CPU.
MIN_PIXELS = 4 * 28 * 28  # the frame default, so runs keep exactly these bounds
MAX_PIXELS = 12 * 28 * 28


@lru_cache(maxsize=1)
def tiny_qwen(min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS):
    """(model, processor): tiny random Qwen2.5-VL + offline processor with the given bounds (the
    checkpoint `python -m recipe.ivgr.eval.tiny_checkpoint` writes)."""
    from recipe.ivgr.eval.tiny_checkpoint import build_tiny_qwen

    return build_tiny_qwen(min_pixels, max_pixels)


class ScriptedBackend(Backend):
    """Returns `script(request)` as the model's text; records every request it saw."""

    name = "scripted"

    def __init__(self, script, bounds=(MIN_PIXELS, MAX_PIXELS), batch_size: int = 8, fail_on=None):
        super().__init__(batch_size=batch_size)
        self.script = script
        self.bounds = bounds
        self.fail_on = fail_on or (lambda request: False)
        self.requests = []

    def image_bounds(self):
        return self.bounds

    def _generate_batch(self, requests):
        if any(self.fail_on(r) for r in requests):
            raise RuntimeError("scripted failure")
        self.requests.extend(requests)
        out = []
        for r in requests:
            text = self.script(r)
            out.append(text if isinstance(text, GenerationResult) else GenerationResult(text=text,
                                                                                        finish_reason="stop"))
        return out


# ------------------------------------------------------------------------------------------ images
def image_bytes(size=(300, 200), colour=(200, 30, 30), fmt="PNG", box=None) -> bytes:
    image = Image.new("RGB", size, colour)
    if box is not None:
        ImageDraw.Draw(image).rectangle(box, fill=(20, 20, 220))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def write_tsv(path: Path, rows: list[dict]) -> Path:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, delimiter="\t")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in columns})
    return path


# -------------------------------------------------------------------------------- public formats
def make_vstar(root: Path) -> Path:
    """V* folder: two subfolders of image + JSON (correct option first, bbox as [x, y, w, h])."""
    items = {
        "direct_attributes": [("sa_1", (400, 300), [60, 80, 40, 30], "What is the color of the cup?",
                               ["white", "black", "red", "green"])],
        "relative_position": [("sa_2", (320, 240), [10, 20, 50, 40], "Is the dog on the left or right of the cat?",
                               ["left", "right"]),
                              ("sa_3", (500, 250), [300, 100, 20, 20], "Is the bag on the left or right of the man?",
                               ["right", "left"])],
    }
    for sub, entries in items.items():
        (root / sub).mkdir(parents=True, exist_ok=True)
        for stem, size, bbox, question, options in entries:
            x, y, w, h = bbox
            (root / sub / f"{stem}.jpg").write_bytes(image_bytes(size, fmt="JPEG", box=(x, y, x + w, y + h)))
            (root / sub / f"{stem}.json").write_text(json.dumps(
                {"target_object": ["thing"], "bbox": [bbox], "question": question, "options": options}))
    return root


def make_vstar_jsonl(root: Path) -> Path:
    make_vstar(root)
    lines = [
        {"image": "direct_attributes/sa_1.jpg", "text": "What is the color of the cup?\n(A) white\n(B) black\n"
         "(C) red\n(D) green\nAnswer with the option's letter from the given choices directly.",
         "category": "direct_attributes", "question_id": 0, "label": "A"},
        {"image": "relative_position/sa_2.jpg", "text": "Is the dog on the left or right of the cat?\n(A) left\n"
         "(B) right\nAnswer with the option's letter from the given choices directly.",
         "category": "relative_position", "question_id": 1, "label": "A"},
    ]
    path = root / "test_questions.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def make_hrbench_tsv(path: Path) -> Path:
    """VLMEvalKit TSV: base64 images; row 2 refers to row 1's image by its index (short cell)."""
    img = b64(image_bytes((640, 360), fmt="JPEG"))
    rows = [
        {"index": 0, "question": "What colour is the flag?", "A": "red", "B": "blue", "C": "green", "D": "white",
         "answer": "A", "category": "single", "cycle_category": "cycle_0", "image": img},
        {"index": 1, "question": "What colour is the flag?", "A": "blue", "B": "green", "C": "white", "D": "red",
         "answer": "D", "category": "single", "cycle_category": "cycle_1", "image": "0"},
        {"index": 2, "question": "Which sign is closer to the car?", "A": "stop", "B": "yield", "C": "exit",
         "D": "none", "answer": "B", "category": "cross", "cycle_category": "cycle_0",
         "image": b64(image_bytes((500, 500), colour=(10, 120, 10)))},
    ]
    return write_tsv(path, rows)


def make_pope_parquet(path: Path) -> Path:
    rows = [
        {"id": str(i), "question_id": str(i + 1), "question": f"Is there a {obj} in the image?", "answer": ans,
         "image_source": f"COCO_{i}", "image": {"bytes": image_bytes((120 + i, 90)), "path": None}, "category": cat}
        for i, (obj, ans, cat) in enumerate([("dog", "yes", "random"), ("cat", "no", "random"),
                                             ("car", "yes", "popular"), ("bus", "no", "adversarial")])
    ]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def make_pope_original(root: Path) -> Path:
    """The original POPE layout: coco_pope_<split>.json as JSON lines, images under an image root."""
    images = root / "val2014"
    images.mkdir(parents=True, exist_ok=True)
    (images / "COCO_val2014_000000000001.jpg").write_bytes(image_bytes((200, 150), fmt="JPEG"))
    lines = [{"question_id": 1, "image": "COCO_val2014_000000000001.jpg", "text": "Is there a dog in the image?",
              "label": "yes"},
             {"question_id": 2, "image": "COCO_val2014_000000000404.jpg", "text": "Is there a cat in the image?",
              "label": "no"}]  # image 404 does not exist: kept, counted missing_image at eval time
    path = root / "coco_pope_adversarial.json"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def make_mme_json(root: Path) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "images" / "a.jpg").write_bytes(image_bytes((800, 600), fmt="JPEG"))
    (root / "images" / "b.png").write_bytes(image_bytes((300, 900)))
    data = [
        {"Question_id": "perception/ocr/1", "Image": "images/a.jpg", "Text": "What is written on the sign?",
         "Question Type": "Multiple Choice", "Answer choices": ["(A) STOP", "(B) GO", "(C) EXIT", "(D) OPEN",
                                                                 "(E) The image does not feature the text."],
         "Ground truth": "C", "Task": "Perception", "Subtask": "OCR", "Category": "text"},
        {"Question_id": "reasoning/1", "Image": "images/b.png", "Text": "How many lanes are open?",
         "Question Type": "Multiple Choice", "Answer choices": ["(A) 1", "(B) 2", "(C) 3", "(D) 4", "(E) 5"],
         "Ground truth": "(B)", "Task": "Reasoning", "Subtask": "Autonomous_Driving", "Category": "lanes"},
    ]
    path = root / "MME-RealWorld-Lite.json"
    path.write_text(json.dumps(data))
    return path


def make_realworldqa_parquet(path: Path) -> Path:
    rows = [
        {"image": {"bytes": image_bytes((400, 300)), "path": "0.webp"},
         "question": "In which direction is the front wheel of the car facing?\n\nA. Left\nB. Straight\nC. Right\n\n"
                     "Please answer directly with only the letter of the correct option and nothing else.",
         "answer": "C"},
        {"image": {"bytes": image_bytes((300, 400)), "path": "1.webp"},
         "question": "How many traffic lights are visible? Please answer directly with a single word or number.",
         "answer": "2"},
    ]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def make_cvbench_parquet(path: Path) -> Path:
    rows = [
        {"idx": 0, "type": "2D", "task": "Count", "image": {"bytes": image_bytes((256, 256)), "path": "img/0.png"},
         "question": "How many chairs are in the image?", "choices": ["0", "1", "2", "3"], "answer": "(C)",
         "prompt": "...", "filename": "img/0.png", "source": "ADE20K", "source_dataset": "ADE20K Validation Set",
         "source_filename": "x.jpg", "target_class": "chair", "target_size": None, "bbox": None},
        {"idx": 1, "type": "2D", "task": "Relation", "image": {"bytes": image_bytes((256, 200)), "path": "img/1.png"},
         "question": "Is the lamp above or below the table?", "choices": ["above", "below"], "answer": "(A)",
         "prompt": "...", "filename": "img/1.png", "source": "COCO", "source_dataset": "COCO Val",
         "source_filename": "y.jpg", "target_class": None, "target_size": None, "bbox": None},
        {"idx": 2, "type": "3D", "task": "Depth", "image": {"bytes": image_bytes((320, 240)), "path": "img/2.png"},
         "question": "Which is closer to the camera, the sofa or the TV?", "choices": ["sofa", "TV"],
         "answer": "(B)", "prompt": "...", "filename": "img/2.png", "source": "Omni3D",
         "source_dataset": "Omni3D", "source_filename": "z.jpg", "target_class": None, "target_size": None,
         "bbox": None},
    ]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def make_treebench_tsv(path: Path) -> Path:
    rows = [
        {"index": 0, "question": "What colour is the small kite?", "A": "red", "B": "blue", "C": "yellow",
         "D": "black", "answer": "B", "category": "Perception/Attributes",
         "target_instances": json.dumps([{"bbox": [100, 50, 140, 90]}]),
         "image": b64(image_bytes((600, 400), box=(100, 50, 140, 90)))},
        {"index": 1, "question": "Which object is left of the lamp?", "A": "chair", "B": "table", "C": "bed",
         "D": "door", "E": "none", "answer": "A", "category": "Reasoning/Perspective Transform",
         "target_instances": json.dumps([[10, 10, 60, 60], [200, 100, 260, 180]]),
         "image": b64(image_bytes((400, 300)))},
    ]
    return write_tsv(path, rows)
