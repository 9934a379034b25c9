"""Image datasets for the vision lesson: images, captions, object records and probe labels.

Introduced in lesson 04.

A :class:`VisionData` holds N scenes: the camera images (uint8, (N, H, W, 3)), one caption per
scene and the ground-truth object records the captions were written from. Two sources fill it:
:func:`synthetic_dataset` (coloured shapes drawn with numpy; fast, no simulator, used by the
tests) and :func:`vla_lessons.vision.sim_data.sim_dataset` (renders of the course's tabletop).

The probes of lesson 04 ask questions that are well defined however many objects a scene has:

* "what": is there a movable object of colour c? of shape s? (:meth:`VisionData.presence`);
* "where": the table (x, y) of each receptacle (plate, bowl, tray: large, one of each at most),
  and "what + where": the (x, y) of the movable object of colour c, in the scenes that have
  exactly one (:meth:`VisionData.positions`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .captions import ObjectRecord, caption_scene

#: Colours of the synthetic scenes, as RGB.
SYNTHETIC_COLOURS = {
    "red": (210, 45, 40),
    "green": (45, 165, 70),
    "blue": (45, 85, 215),
    "yellow": (230, 200, 40),
}
#: Shapes of the synthetic scenes (drawn as a square, a disc and a ring).
SYNTHETIC_SHAPES = ("cube", "ball", "bowl")
#: Half-extent in metres of the two synthetic object sizes.
SYNTHETIC_SIZES = {"small": 0.02, "large": 0.035}
#: Half-width in metres of the square table the synthetic camera sees.
TABLE_HALF_WIDTH = 0.3


@dataclass
class VisionData:
    """N scenes: images (N, H, W, 3) uint8, N captions, N lists of object records.

    Introduced in lesson 04.
    """

    images: np.ndarray
    captions: list[str]
    objects: list[list[ObjectRecord]]
    colours: list[str] = field(default_factory=list)
    shapes: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not (isinstance(self.images, np.ndarray) and self.images.dtype == np.uint8
                and self.images.ndim == 4 and self.images.shape[-1] == 3):
            raise ValueError("images must be a uint8 array of shape (N, H, W, 3)")
        n = len(self.images)
        if len(self.captions) != n or len(self.objects) != n:
            raise ValueError(f"got {n} images, {len(self.captions)} captions, {len(self.objects)} object lists")
        movable = [o for objs in self.objects for o in objs if o.kind == "object"]
        if not self.colours:
            self.colours = sorted({o.colour for o in movable})
        if not self.shapes:
            self.shapes = sorted({o.shape for o in movable})

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index) -> "VisionData":
        """The scenes at ``index`` (a slice or integer array), keeping the class lists."""
        idx = np.arange(len(self))[index]
        return VisionData(self.images[idx], [self.captions[i] for i in idx], [self.objects[i] for i in idx],
                          list(self.colours), list(self.shapes))

    def _things(self, i: int, kind: str) -> list[ObjectRecord]:
        return [o for o in self.objects[i] if o.kind == kind]

    def values(self, attribute: str = "colour", kind: str = "object") -> list[str]:
        """The sorted class names of ``attribute`` for ``kind``: the columns of the label arrays.

        Introduced in lesson 04. For movable objects, :attr:`colours` and :attr:`shapes`.
        """
        if attribute not in ("colour", "shape"):
            raise ValueError(f"attribute must be 'colour' or 'shape', got {attribute!r}")
        if kind == "object":
            return self.colours if attribute == "colour" else self.shapes
        return sorted({getattr(o, attribute) for objs in self.objects for o in objs if o.kind == kind})

    def presence(self, attribute: str = "colour", kind: str = "object") -> np.ndarray:
        """(N, K) int64: 1 where scene n has a ``kind`` thing with the k-th colour (or shape).

        Introduced in lesson 04. K runs over :meth:`values`.
        """
        values = self.values(attribute, kind)
        out = np.zeros((len(self), len(values)), dtype=np.int64)
        for n in range(len(self)):
            for o in self._things(n, kind):
                out[n, values.index(getattr(o, attribute))] = 1
        return out

    def positions(self, attribute: str = "colour", kind: str = "object") -> np.ndarray:
        """(N, K, 2) float32: table (x, y) in metres of scene n's only ``kind`` thing with value k.

        Introduced in lesson 04. NaN where the scene has no such thing or more than one.
        ``positions("shape", "receptacle")`` locates the plate, the bowl and the tray.
        """
        values = self.values(attribute, kind)
        out = np.full((len(self), len(values), 2), np.nan, dtype=np.float32)
        for n in range(len(self)):
            things = self._things(n, kind)
            for k, value in enumerate(values):
                match = [o for o in things if getattr(o, attribute) == value]
                if len(match) == 1:
                    out[n, k] = match[0].position[:2]
        return out


def _to_pixel(xy: np.ndarray, image_size: int) -> np.ndarray:
    """Table (x, y) in metres -> (column, row) in pixels; +x is right, +y is up (away)."""
    u = (xy[..., 0] + TABLE_HALF_WIDTH) / (2 * TABLE_HALF_WIDTH) * image_size
    v = (TABLE_HALF_WIDTH - xy[..., 1]) / (2 * TABLE_HALF_WIDTH) * image_size
    return np.stack([u, v], axis=-1)


def _draw(image: np.ndarray, obj: ObjectRecord, shade: float) -> None:
    size = image.shape[0]
    cu, cv = _to_pixel(np.asarray(obj.position[:2]), size)
    r = SYNTHETIC_SIZES[obj.size] / (2 * TABLE_HALF_WIDTH) * size
    vv, uu = np.mgrid[0:size, 0:size] + 0.5
    du, dv = uu - cu, vv - cv
    if obj.shape == "cube":
        mask = (np.abs(du) <= r) & (np.abs(dv) <= r)
    elif obj.shape == "ball":
        mask = du**2 + dv**2 <= r**2
    elif obj.shape == "bowl":
        d2 = du**2 + dv**2
        mask = (d2 <= r**2) & (d2 >= (0.55 * r) ** 2)
    else:
        raise ValueError(f"unknown synthetic shape {obj.shape!r}; expected one of {SYNTHETIC_SHAPES}")
    colour = np.array(SYNTHETIC_COLOURS[obj.colour], dtype=np.float32) * shade
    image[mask] = colour


def synthetic_scene(rng: np.random.Generator, image_size: int = 112,
                    n_objects: tuple[int, int] = (1, 3)) -> tuple[np.ndarray, list[ObjectRecord]]:
    """One scene of non-overlapping coloured shapes on a table, seen from above.

    Introduced in lesson 04. Returns the image (image_size, image_size, 3) uint8 and its
    object records (positions in metres, +x right, +y away from the camera; sizes as words).
    """
    count = int(rng.integers(n_objects[0], n_objects[1] + 1))
    colours, shapes, sizes = list(SYNTHETIC_COLOURS), list(SYNTHETIC_SHAPES), list(SYNTHETIC_SIZES)
    records: list[ObjectRecord] = []
    margin = TABLE_HALF_WIDTH - max(SYNTHETIC_SIZES.values()) - 0.01
    while len(records) < count:
        size = sizes[rng.integers(len(sizes))]
        xy = rng.uniform(-margin, margin, size=2)
        clear = all(np.hypot(*(xy - np.asarray(o.position))) > SYNTHETIC_SIZES[size] + SYNTHETIC_SIZES[o.size] + 0.02
                    for o in records)
        colour, shape = colours[rng.integers(len(colours))], shapes[rng.integers(len(shapes))]
        if clear:
            records.append(ObjectRecord(f"{shape}_{len(records)}", colour, shape, size, (float(xy[0]), float(xy[1]))))
    table = np.array([150, 130, 110], dtype=np.float32) * rng.uniform(0.85, 1.15)
    image = np.broadcast_to(table, (image_size, image_size, 3)).copy()
    image += rng.normal(0.0, 4.0, size=image.shape).astype(np.float32)
    for obj in records:
        _draw(image, obj, shade=float(rng.uniform(0.85, 1.1)))
    return np.clip(image, 0, 255).astype(np.uint8), records


def synthetic_dataset(n: int, seed: int = 0, image_size: int = 112,
                      n_objects: tuple[int, int] = (1, 3)) -> VisionData:
    """``n`` seeded synthetic scenes with their captions: the simulator-free stand-in.

    Introduced in lesson 04. Same seed, same images and captions.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    images, objects = [], []
    for _ in range(n):
        image, records = synthetic_scene(rng, image_size, n_objects)
        images.append(image)
        objects.append(records)
    captions = [caption_scene(objs) for objs in objects]
    return VisionData(np.stack(images), captions, objects, sorted(SYNTHETIC_COLOURS), sorted(SYNTHETIC_SHAPES))


def save_vision_data(data: VisionData, path) -> Path:
    """Write ``data`` to one ``.npz`` file: the images plus captions and records as JSON text.

    Introduced in lesson 04.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"captions": data.captions, "colours": data.colours, "shapes": data.shapes,
            "objects": [[asdict(o) for o in objs] for objs in data.objects]}
    np.savez_compressed(path, images=data.images, meta=np.array(json.dumps(meta)))
    return path


def load_vision_data(path) -> VisionData:
    """Read what :func:`save_vision_data` wrote.

    Introduced in lesson 04.
    """
    with np.load(Path(path)) as archive:
        images = archive["images"]
        meta = json.loads(str(archive["meta"]))
    objects = [[ObjectRecord(**{**o, "position": tuple(o["position"])}) for o in objs] for objs in meta["objects"]]
    return VisionData(images, meta["captions"], objects, meta["colours"], meta["shapes"])
