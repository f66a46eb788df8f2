"""Reading what a file holds against a schema of exactly what this project writes. torch.load gives back any
structure the file describes: lists that contain themselves, a million references to one list, nesting
200,000 deep, tensors whose strides repeat one number a billion times. So nothing walks what the file holds:
`check` walks the schema, visits each container once (one met again is refused: no run writes one object at
two places), and looks at a tensor's type, shape and memory before any arithmetic on it. The first value that
does not fit raises Invalid, naming where it is and what it is, in one short line."""
from dataclasses import dataclass

import torch

from utils.errors import shown


class Invalid(ValueError):
    """A value that does not fit its schema: str(error) is "<where> <what it is instead>"."""


def check(value, schema, where: str) -> None:
    schema.check(value, where, Walk())


class Walk:
    """What one check has visited: the containers (no run writes one object at two places) and tensors' memory."""

    def __init__(self):
        self.seen, self.order, self.memory = set(), [], {}  # memory: a storage's address -> its tensors' byte ranges

    def visit(self, value, where) -> None:
        if value and id(value) in self.seen:  # () is one object wherever it is
            refuse(where, f"is {what(value)} met before (a shared reference), not a value of its own")
        self.seen.add(id(value))
        self.order.append(id(value))

    def forget(self, mark: int) -> None:
        """Unvisit the containers visited since `mark` (a length of self.order): a schema that did not fit them."""
        self.seen.difference_update(self.order[mark:])
        del self.order[mark:]


def what(value) -> str:
    """A value as a message names it: containers by type and length, never by their contents."""
    if isinstance(value, torch.Tensor):
        return f"a {name(value.dtype)} tensor of shape {size(value.shape)}"
    if isinstance(value, (dict, list, tuple)):
        return f"a {type(value).__name__} of {len(value)}"
    if isinstance(value, str):
        return f"the text {shown(repr(value), 60)}"
    if type(value) is int and abs(value) >= 10**15:  # Python refuses to print ints of over 4,300 digits
        return "a whole number of over 15 digits"
    if type(value) in (bool, int, float) or value is None:
        return repr(value)
    return f"a {shown(type(value).__name__, 40)}"


def name(kind) -> str:
    """A torch dtype or layout as a message names it: float32, sparse_coo."""
    return str(kind).removeprefix("torch.")


def size(shape) -> str:
    return "x".join(map(str, shape)) or "a single number"


def refuse(where: str, text: str):
    raise Invalid(f"{where or 'it'} {text}")


def inside(where: str, key) -> str:
    """Where a container's item is: history[0]['curve'], or a top-level key by its name."""
    key = shown(repr(key), 60) if where or type(key) is not str else shown(key, 60)
    return f"{where}[{key}]" if where else key


@dataclass(frozen=True, eq=False)
class Number:
    low: float
    high: float
    whole: bool = False  # an int; else an int or a float
    above_low: bool = False  # low itself is out of range

    def check(self, value, where, walk):
        if type(value) not in ((int,) if self.whole else (int, float)):
            refuse(where, f"is {what(value)}, not a {'whole ' if self.whole else ''}number")
        if not (self.low < value if self.above_low else self.low <= value) or not value <= self.high:  # NaN too
            refuse(where, f"is {what(value)}, not {'above' if self.above_low else 'from'} {self.low:g} "
                          f"{'and at most' if self.above_low else 'to'} {self.high:g}")


@dataclass(frozen=True, eq=False)
class Kind:
    """A value of exactly this type (bool, or type(None) for None)."""
    type: type

    def check(self, value, where, walk):
        if type(value) is not self.type:
            refuse(where, f"is {what(value)}, not {'None' if self.type is type(None) else self.type.__name__}")


@dataclass(frozen=True, eq=False)
class Text:
    longest: int
    choices: tuple = ()

    def check(self, value, where, walk):
        if type(value) is not str or len(value) > self.longest:
            refuse(where, f"is {what(value)}, not a text of at most {self.longest} characters")
        if self.choices and value not in self.choices:
            refuse(where, f"is {what(value)}, not one of {', '.join(self.choices)}")


@dataclass(frozen=True, eq=False)
class Either:
    options: tuple

    def check(self, value, where, walk):
        for option in self.options:
            mark = len(walk.order)
            try:
                return option.check(value, where, walk)
            except Invalid as error:  # the next option sees the value afresh
                walk.forget(mark)
                last = error
        raise last


def maybe(schema):
    return Either((Kind(type(None)), schema))


@dataclass(frozen=True, eq=False)
class Seq:
    """A list or tuple of `item`s: `shortest` to `longest` of them."""
    item: object
    longest: int
    shortest: int = 0

    def check(self, value, where, walk):
        if type(value) not in (list, tuple) or not self.shortest <= len(value) <= self.longest:
            many = f"{self.longest}" if self.shortest == self.longest else f"{self.shortest} to {self.longest}"
            refuse(where, f"is {what(value)}, not a list of {many}")
        walk.visit(value, where)
        for index, item in enumerate(value):
            self.item.check(item, inside(where, index), walk)


@dataclass(frozen=True, eq=False)
class Record:
    """A dict of these named fields (those in `optional` may be absent); other keys only where `rest` says
    what their values are, up to `longest` keys in all."""
    fields: dict
    optional: frozenset = frozenset()
    rest: object = None
    longest: int = 64

    def check(self, value, where, walk):
        if type(value) is not dict:
            refuse(where, f"is {what(value)}, not a dict")
        missing = [key for key in self.fields if key not in value and key not in self.optional]
        if missing:
            refuse(where, f"has no {', '.join(missing)}")
        if len(value) > self.longest:
            refuse(where, f"holds {len(value):,} entries, more than {self.longest}")
        walk.visit(value, where)
        for key, item in value.items():
            schema = self.fields.get(key, self.rest) if type(key) is str else None
            if schema is None:
                refuse(where, f"holds an unknown entry {shown(repr(key), 60)}")
            schema.check(item, inside(where, key), walk)


@dataclass(frozen=True, eq=False)
class Mapping:
    """A dict whose keys fit `key` and values `value`: at most `longest` of them."""
    key: object
    value: object
    longest: int

    def check(self, value, where, walk):
        if type(value) is not dict or len(value) > self.longest:
            refuse(where, f"is {what(value)}, not a dict of at most {self.longest} entries")
        walk.visit(value, where)
        for key, item in value.items():
            self.key.check(key, f"{where or 'a'} key", walk)
            self.value.check(item, inside(where, key), walk)


@dataclass(frozen=True, eq=False)
class Tensor:
    """A dense CPU tensor of one of `dtypes` and one of `shapes` (or: one dimension of at most `longest`), in
    memory of its own: contiguous, overlapping no other tensor (several may share a storage: 01e8972 saved its
    weights as views of one); finite if floating."""
    dtypes: tuple
    shapes: tuple = ()
    longest: int = 0

    def check(self, value, where, walk):
        if type(value) is not torch.Tensor:
            refuse(where, f"is {what(value)}, not a tensor")
        if value.layout != torch.strided:
            refuse(where, f"is a {name(value.layout)} tensor, not a dense one")
        if value.device.type != "cpu":  # loading maps every tensor that holds values to the CPU: "meta" holds none
            refuse(where, f"is a tensor without values (on the {value.device.type} device)")
        if value.dtype not in self.dtypes:
            refuse(where, f"is a {name(value.dtype)} tensor, not {' or '.join(map(name, self.dtypes))}")
        shape = tuple(value.shape)
        if not (shape in self.shapes or self.longest and len(shape) == 1 and shape[0] <= self.longest):
            expected = (" or ".join(map(size, self.shapes)) if len(self.shapes) <= 3 else
                        f"one of the {len(self.shapes)} shapes its layers have") or f"a list of at most {self.longest}"
            refuse(where, f"is a tensor of shape {size(shape)}, not {expected}")
        start, storage = value.storage_offset() * value.element_size(), value.untyped_storage()
        end = start + value.numel() * value.element_size()
        if not value.is_contiguous() or end > storage.nbytes():
            refuse(where, "is not a block of memory of its own (an expanded or strided view)")
        used = walk.memory.setdefault(storage.data_ptr(), [])
        if any(start < other_end and other_start < end for other_start, other_end in used):
            refuse(where, "overlaps another tensor's memory")
        used.append((start, end))
        if value.is_floating_point() and not torch.isfinite(value).all():
            refuse(where, "is a tensor with NaN or infinite values")
