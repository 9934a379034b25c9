"""Questions and answers about simulated scenes: the course's stand-in for web image-text data.

Introduced in lesson 05.

A VLM learns to see from (image, text) pairs: LLaVA's and Prismatic's data are web captions and
visual question answering (VQA). Here every answer is written from the simulator's ground truth
(``env.scene_objects()``, ``env.gripper_pose()``), so it is always right. One scene gives one
sample of each question type that applies to it:

==============  ============================================  ==========================
kind            question                                      answer
==============  ============================================  ==========================
``caption``     what is on the table?                         a caption (lesson 04's language)
``colour``      what colour is the cube?                      red
``shape``       what shape is the green object?               ball
``count``       how many objects are on the table?            three  (or: how many cubes ...)
``left_right``  is the red cube left of the plate?            yes / no
``nearest``     which object is nearest the gripper?          blue cylinder
==============  ============================================  ==========================

Conventions. "Objects" are the movable things (cubes, balls, cylinders; ``kind == "object"``);
the plate, bowl and tray are receptacles and are not counted. "Left" and "right" are **as seen in
the camera image** (the third-person camera looks at the robot from the front, so image-left is
roughly the robot's right), the same convention as lesson 04's captions. Questions are only
asked when the answer is unambiguous: a colour question names a shape that occurs once, a
left/right question needs 4 cm of sideways separation, the nearest object must be clearly nearer
than the next (by ``NEAREST_MARGIN``). A caption lists the objects from left to right, then the
receptacles, so it is a function of the image alone.

Scenes are ``TabletopEnv.reset(seed=...)`` renders of the third-person camera at 96 px (the size of
the robot datasets), with the arm's start pose jittered (``arm_init_noise``) so the gripper is
seen in different places. Seeds: the ``"train"`` split uses ``TRAIN_SEED_START + i``, the held-out
split ``HELDOUT_SEED_START + i``; neither overlaps the robot datasets' seeds.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from vla_lessons import env as course_env

#: Question kinds in a fixed order (reports and per-kind accuracy follow it).
KINDS = ("caption", "colour", "shape", "count", "left_right", "nearest")
#: First scene seed of each split (the robot datasets use 0.., 1_000_000..; evaluation 10_000_000..).
TRAIN_SEED_START = 2_000_000
HELDOUT_SEED_START = 2_500_000
SPLIT_SEEDS = {"train": TRAIN_SEED_START, "heldout": HELDOUT_SEED_START}
#: Default render size (the robot datasets' size) and start-pose jitter of the arm (rad).
IMAGE_SIZE = 96
ARM_INIT_NOISE = 0.15
#: A left/right question needs this much sideways separation in the camera's view (m).
LEFT_RIGHT_MARGIN = 0.04
#: The nearest object must be nearer than the next one by this much (m).
NEAREST_MARGIN = 0.02
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six")
#: The caption question (Prismatic/LLaVA use a short fixed request for captions).
CAPTION_QUESTION = "what is on the table?"


@dataclass(frozen=True)
class Thing:
    """One thing on the table: ``kind`` is ``"object"`` (movable) or ``"receptacle"``.

    Introduced in lesson 05. ``position`` is (x, y, z) in metres, world frame.
    """

    colour: str
    shape: str
    kind: str
    position: tuple[float, float, float]

    @property
    def phrase(self) -> str:
        """How questions name it: ``"red cube"`` for an object, ``"plate"`` for a receptacle."""
        return f"{self.colour} {self.shape}" if self.kind == "object" else self.shape


@dataclass(frozen=True)
class VQASample:
    """One question about one scene: ``scene`` indexes the image, ``kind`` is one of :data:`KINDS`.

    Introduced in lesson 05.
    """

    scene: int
    kind: str
    question: str
    answer: str


@dataclass
class VQAData:
    """Scenes and their questions: images uint8 (N, H, W, 3), one list of things per scene.

    Introduced in lesson 05. ``grippers`` is float (N, 3), the gripper's tool point in metres;
    ``samples`` the questions, each pointing at a scene by index.
    """

    images: np.ndarray
    seeds: list[int]
    things: list[list[Thing]]
    grippers: np.ndarray
    samples: list[VQASample]
    split: str = "train"

    def __post_init__(self):
        if not (isinstance(self.images, np.ndarray) and self.images.dtype == np.uint8
                and self.images.ndim == 4 and self.images.shape[-1] == 3):
            raise ValueError("images must be a uint8 array of shape (N, H, W, 3)")
        n = len(self.images)
        if not (len(self.seeds) == len(self.things) == len(self.grippers) == n):
            raise ValueError(f"got {n} images, {len(self.seeds)} seeds, {len(self.things)} scenes of things "
                             f"and {len(self.grippers)} gripper positions")
        bad = [s for s in self.samples if not 0 <= s.scene < n or s.kind not in KINDS]
        if bad:
            raise ValueError(f"samples must point at scenes 0..{n - 1} and have a kind from {KINDS}: {bad[:3]}")

    def __len__(self) -> int:
        return len(self.samples)

    def of_kind(self, *kinds: str) -> list[VQASample]:
        """The samples whose kind is in ``kinds``."""
        unknown = [k for k in kinds if k not in KINDS]
        if unknown:
            raise ValueError(f"unknown question kinds {unknown}; known: {KINDS}")
        return [s for s in self.samples if s.kind in kinds]

    def texts(self) -> list[str]:
        """Every question and answer (for the tokenizer's corpus)."""
        return [t for s in self.samples for t in (s.question, s.answer)]

    def kind_counts(self) -> dict[str, int]:
        """How many samples of each kind."""
        counts = Counter(s.kind for s in self.samples)
        return {k: counts.get(k, 0) for k in KINDS}


# ----------------------------------------------------------------------------- the camera's view


def camera_right_axis() -> np.ndarray:
    """Unit (x, y) vector of the image's "right" on the table (the third-person camera's).

    Introduced in lesson 05 (the same axis as lesson 04's captions).
    """
    from vla_lessons.vision.sim_data import camera_axes

    return np.asarray(camera_axes()[0], dtype=float)


def sideways(a: Thing, b: Thing, right: np.ndarray) -> float:
    """How far ``a`` is to the right of ``b`` in the image, in metres along ``right``."""
    return float((np.asarray(a.position[:2]) - np.asarray(b.position[:2])) @ right)


def caption(things: list[Thing], right: np.ndarray) -> str:
    """Objects from left to right, then receptacles from left to right, in lesson 04's caption language.

    Introduced in lesson 05. ``right`` is the image's right on the table (x, y); "behind" is
    ``right`` turned 90 degrees anticlockwise (away from the camera), as in ``camera_axes``. E.g. ``"a red cube left of a blue ball, and a white plate, a teal bowl"``.
    """
    from vla_lessons.vision.captions import ObjectRecord, caption_scene

    def order(kind):
        chosen = [t for t in things if t.kind == kind]
        return sorted(chosen, key=lambda t: float(np.asarray(t.position[:2]) @ right))

    records = [ObjectRecord(f"thing{i}", t.colour, t.shape, None, t.position[:2], t.kind)
               for i, t in enumerate(order("object") + order("receptacle"))]
    forward = (-float(right[1]), float(right[0]))  # the viewing direction: right turned 90 degrees
    return caption_scene(records, right_axis=(float(right[0]), float(right[1])), forward_axis=forward)


# ----------------------------------------------------------------------------- questions


def questions_for_scene(things: list[Thing], gripper, rng: np.random.Generator, scene: int = 0,
                        right: np.ndarray | None = None) -> list[VQASample]:
    """One sample of each question kind that has an unambiguous answer in this scene.

    Introduced in lesson 05. Pure given ``rng``: ``things`` and ``gripper`` ((3,) metres) are the
    ground truth; ``right`` the camera's right axis (default :func:`camera_right_axis`).
    """
    right = camera_right_axis() if right is None else np.asarray(right, dtype=float)
    objects = [t for t in things if t.kind == "object"]
    if not objects:
        raise ValueError("a scene needs at least one movable object to ask about")
    out = [VQASample(scene, "caption", CAPTION_QUESTION, caption(things, right))]

    shapes = Counter(o.shape for o in objects)
    unique_shapes = sorted(s for s, c in shapes.items() if c == 1)
    if unique_shapes:
        shape = unique_shapes[int(rng.integers(len(unique_shapes)))]
        colour = next(o.colour for o in objects if o.shape == shape)
        out.append(VQASample(scene, "colour", f"what colour is the {shape}?", colour))
    colours = Counter(o.colour for o in objects)
    unique_colours = sorted(c for c, n in colours.items() if n == 1)
    if unique_colours:
        colour = unique_colours[int(rng.integers(len(unique_colours)))]
        shape = next(o.shape for o in objects if o.colour == colour)
        out.append(VQASample(scene, "shape", f"what shape is the {colour} object?", shape))

    if rng.random() < 0.5:
        out.append(VQASample(scene, "count", "how many objects are on the table?", NUMBER_WORDS[len(objects)]))
    else:
        from vla_lessons.sim.config import SHAPES

        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        out.append(VQASample(scene, "count", f"how many {shape}s are there?", NUMBER_WORDS[shapes.get(shape, 0)]))

    pairs = [(a, b) for a in objects for b in things
             if b is not a and abs(sideways(a, b, right)) >= LEFT_RIGHT_MARGIN]
    if pairs:
        a, b = pairs[int(rng.integers(len(pairs)))]
        relation = "left of" if rng.random() < 0.5 else "right of"
        is_right = sideways(a, b, right) > 0
        answer = "yes" if (relation == "right of") == is_right else "no"
        out.append(VQASample(scene, "left_right", f"is the {a.phrase} {relation} the {b.phrase}?", answer))

    grip = np.asarray(gripper, dtype=float)
    dist = sorted((float(np.linalg.norm(np.asarray(o.position) - grip)), i) for i, o in enumerate(objects))
    if len(dist) == 1 or dist[1][0] - dist[0][0] >= NEAREST_MARGIN:
        out.append(VQASample(scene, "nearest", "which object is nearest the gripper?", objects[dist[0][1]].phrase))
    return out


# ----------------------------------------------------------------------------- scenes


def _things_of(scene_objects) -> list[Thing]:
    return [Thing(o.colour, o.shape, o.kind, tuple(float(v) for v in o.position)) for o in scene_objects]


def render_scenes(n: int, split: str = "train", image_size: int = IMAGE_SIZE, arm_init_noise: float = ARM_INIT_NOISE,
                  progress: bool = False) -> tuple[np.ndarray, list[int], list[list[Thing]], np.ndarray]:
    """Render ``n`` tabletop scenes of a split: ``(images, seeds, things, grippers)``.

    Introduced in lesson 05. Scene ``i`` is ``reset(seed=SPLIT_SEEDS[split] + i)`` with the task
    family cycling pick, place, push (each lays the table out a little differently). Images are
    the third-person camera, uint8 (n, S, S, 3). About 0.07 s per scene.
    """
    if split not in SPLIT_SEEDS:
        raise ValueError(f"split must be one of {tuple(SPLIT_SEEDS)}, got {split!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= 400_000:
        raise ValueError(f"n must be an int in [1, 400000] (the splits' seed ranges must not overlap), got {n!r}")
    course_env.setup_headless_gl()
    from vla_lessons.sim import FAMILIES, SceneConfig, TabletopEnv

    sim = TabletopEnv(SceneConfig(image_size=image_size, arm_init_noise=arm_init_noise))
    images, seeds, things, grippers = [], [], [], []
    steps = range(int(n))
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=f"render {split} scenes", leave=False)
    try:
        for i in steps:
            seed = SPLIT_SEEDS[split] + i
            obs, _ = sim.reset(seed=seed, options={"task": FAMILIES[i % len(FAMILIES)]})
            images.append(obs["image"])
            seeds.append(seed)
            things.append(_things_of(sim.scene_objects()))
            grippers.append(sim.gripper_pose().position.astype(float))
    finally:
        sim.close()
    return np.stack(images), seeds, things, np.stack(grippers)


def vqa_dataset(n_scenes: int, split: str = "train", image_size: int = IMAGE_SIZE,
                arm_init_noise: float = ARM_INIT_NOISE, progress: bool = False) -> VQAData:
    """``n_scenes`` rendered scenes of ``split`` with about six questions each (seeded).

    Introduced in lesson 05. The same arguments give the same data in any process. The
    question choices of scene ``i`` are drawn from ``numpy.random.default_rng(seed_i)``.
    """
    images, seeds, things, grippers = render_scenes(n_scenes, split, image_size, arm_init_noise, progress)
    right = camera_right_axis()
    samples = []
    for i, (seed, scene, grip) in enumerate(zip(seeds, things, grippers)):
        samples += questions_for_scene(scene, grip, np.random.default_rng(seed), scene=i, right=right)
    return VQAData(images, seeds, things, grippers, samples, split)


def majority_answers(data: VQAData) -> dict[str, str]:
    """The most frequent answer of each question text in ``data``: the best *blind* guess.

    Introduced in lesson 05. A model that never looks at the image can at best learn these
    (ties go to the alphabetically first answer).
    """
    by_question = defaultdict(Counter)
    for s in data.samples:
        by_question[s.question][s.answer] += 1
    return {q: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for q, c in by_question.items()}


def kind_majority_answers(data: VQAData) -> dict[str, str]:
    """The most frequent answer of each question *kind* in ``data`` (ties: alphabetically first).

    Introduced in lesson 05. The blind guess for a question text that ``data`` never asked.
    """
    by_kind = defaultdict(Counter)
    for s in data.samples:
        by_kind[s.kind][s.answer] += 1
    return {k: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for k, c in by_kind.items()}


def blind_accuracy(train: VQAData, test: VQAData, backoff: bool = False) -> dict[str, float]:
    """Exact-match accuracy per kind (and ``"all"``) of answering ``test`` with ``train``'s majority answers.

    Introduced in lesson 05. Questions never seen in training count as wrong, unless
    ``backoff=True``: then they get the majority answer of their kind in ``train``
    (:func:`kind_majority_answers`), the fair blind baseline when ``train`` is small and many
    question texts (``"is the red cube left of the plate?"``) occur only once.
    """
    if not isinstance(train, VQAData) or not isinstance(test, VQAData) or not test.samples:
        raise ValueError("train and test must be VQAData, test with samples (see vqa_dataset)")
    guess = majority_answers(train)
    fallback = kind_majority_answers(train) if backoff else {}
    hits, totals = Counter(), Counter()
    for s in test.samples:
        totals[s.kind] += 1
        hits[s.kind] += int(guess.get(s.question, fallback.get(s.kind)) == s.answer)
    out = {k: hits[k] / totals[k] for k in KINDS if totals[k]}
    out["all"] = sum(hits.values()) / max(1, sum(totals.values()))
    return out
