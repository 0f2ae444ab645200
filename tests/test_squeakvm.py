"""The image patcher of squeakvm.py, without a VM: on images built here object by object,
and on the Squeak image Debian's `scratch` ships when it is installed."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import pytest
import squeakvm
from helpers import unavailable
from squeakvm import ImageError, patch_read_document_file, plan_patch, read_header

BASE = 0x10000000


@dataclass
class _Object:
    oop: int
    offset: int  # of its base header in the data part
    slots: int


@dataclass
class ImageBuilder:
    """A classic 32-bit image laid out object by object, with every header kind."""

    data: bytearray = field(default_factory=bytearray)

    def _header(self, size_bytes: int, fmt: int, compact: int, kind: int) -> int:
        return (compact << 12) | (fmt << 8) | (size_bytes if kind != 0 else 0) | kind

    def add(self, fmt: int, body: bytes, cls: int = 0, compact: int = 0) -> int:
        """Append an object whose contents (after the base header) are `body`; its oop."""
        size = 4 + len(body)
        if compact:
            kind, extra = 3, b""
        elif size <= 0xFC:
            kind, extra = 1, struct.pack("<I", cls | 1)
        else:
            kind, extra = 0, struct.pack("<II", size | 0, cls | 0)
        self.data += extra
        oop = BASE + len(self.data)
        self.data += struct.pack("<I", self._header(size, fmt, compact, kind)) + body
        return oop

    def pointers(self, slots: list[int], cls: int = 0, fmt: int = 2) -> int:
        return self.add(fmt, struct.pack(f"<{len(slots)}I", *slots), cls)

    def bytes_object(self, text: bytes, cls: int, fmt: int = 8) -> int:
        padding = -len(text) % 4
        return self.add(fmt + padding, text + b"\0" * padding, cls)

    def free_chunk(self, size: int) -> None:
        self.data += struct.pack("<I", size | 2) + b"\0" * (size - 4)

    def set_slot(self, oop: int, index: int, value: int) -> None:
        struct.pack_into("<I", self.data, oop - BASE + 4 + 4 * index, value)

    def image(self, special_objects: int, version: int = 6502) -> bytes:
        header = struct.pack("<5I", version, 64, len(self.data), BASE, special_objects)
        return header.ljust(64, b"\0") + bytes(self.data)


def method_body(literals: list[int], code: bytes, trailer: bytes = b"\x01\x02\x03\xfd") -> bytes:
    """A CompiledMethod's contents: header word, literals, bytecodes, trailer."""
    words = struct.pack(f"<{1 + len(literals)}I", squeakvm.method_header(len(literals)), *literals)
    return words + code + trailer


NAMES = (
    "readDocumentFile",
    "Compiler",
    "FileStream",
    "getSystemAttribute:",
    "readOnlyFileNamed:",
    "contentsOfEntireFile",
    "evaluate:",
    "+",
)


@dataclass
class Built:
    image: bytes
    method: int
    symbols: dict[str, int]
    bindings: dict[str, int]


def build_image(
    *, method_code: bytes = bytes(29), leave_out: str = "", with_method: bool = True
) -> Built:
    """A tiny image with what the patcher looks for: special objects, Symbol, Smalltalk
    (a SystemDictionary), its class's method dictionary and readDocumentFile."""
    b = ImageBuilder()
    nil = b.pointers([], fmt=0)
    symbol_class = b.pointers([0, 0, 0])
    b.free_chunk(16)
    symbols = {
        name: b.bytes_object(name.encode(), symbol_class) for name in NAMES if name != leave_out
    }
    special_selectors = b.pointers([symbols["+"], 1])
    bindings = {name: b.pointers([symbols[name], nil]) for name in ("Compiler", "FileStream")}
    # Big enough for a 3-word header, and holding nil like a real hashed collection.
    associations = b.pointers([nil] * 70 + list(bindings.values()))
    selector = symbols["readDocumentFile"] if with_method else symbols["evaluate:"]
    contents = method_body([nil, nil], method_code)
    padding = -len(contents) % 4  # unused bytes at the end, counted in the format
    method = b.add(12 + padding, contents + bytes(padding))
    methods = b.pointers([nil, method])
    method_dict = b.pointers([1 << 1 | 1, methods, nil, selector], fmt=3)
    system_dictionary = b.pointers([nil, method_dict, 1], fmt=1)
    smalltalk = b.pointers([3, associations], cls=system_dictionary, fmt=1)
    compact_classes = b.pointers([nil] * 31)
    special = [nil] * 30
    special[8], special[23], special[28] = smalltalk, special_selectors, compact_classes
    special_objects = b.pointers(special)
    # A compact-class object (1-word header) after everything else.
    b.set_slot(compact_classes, 0, symbol_class)
    b.add(8, b"abcd", compact=1)
    return Built(b.image(special_objects), method, symbols, bindings)


def method_contents(image: bytes, method: int) -> bytes:
    """The bytes of the method object after its base header, 2-word header assumed."""
    offset = method - BASE + 64
    size = struct.unpack_from("<I", image, offset)[0] & 0xFC
    return image[offset + 4 : offset + size]


def test_patch_rewrites_only_the_method_body() -> None:
    built = build_image()
    patched = patch_read_document_file(built.image)
    assert len(patched) == len(built.image)
    body = method_contents(patched, built.method)
    literals = list(struct.unpack_from("<7I", body, 0))
    assert literals[0] == squeakvm.method_header(6)
    assert literals[1:] == [
        built.bindings["Compiler"],
        built.bindings["FileStream"],
        built.symbols["getSystemAttribute:"],
        built.symbols["readOnlyFileNamed:"],
        built.symbols["contentsOfEntireFile"],
        built.symbols["evaluate:"],
    ]
    code = body[28:-7]  # before the 4-byte trailer and the 3 unused bytes
    assert code.startswith(bytes([0x40, 0x41, 0x70, 0x77, 0xE2, 0xE3, 0xD4, 0xE5, 0x87, 0x78]))
    assert set(code[10:]) <= {0x78}
    # Everything outside the header, literals and bytecodes is untouched.
    patch = plan_patch(built.image)
    start, end = patch.offset, patch.offset + patch.length
    assert patched[:start] == built.image[:start] and patched[end:] == built.image[end:]
    assert body[-7:] == built.image[end : end + 7] == b"\x01\x02\x03\xfd\0\0\0"


def test_patching_twice_gives_the_same_image() -> None:
    once = patch_read_document_file(build_image().image)
    assert patch_read_document_file(once) == once


def test_objects_are_walked_through_every_header_kind() -> None:
    built = build_image()
    heap = squeakvm.Heap(built.image)
    oops = list(heap.oops())
    assert built.method in oops and all(symbol in oops for symbol in built.symbols.values())
    sizes = {heap.byte_size(oop) for oop in oops}
    assert max(sizes) > 0xFC  # the 3-word header of the associations
    assert heap.class_of(oops[-1]) == heap.class_of(built.symbols["+"])  # compact class


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"leave_out": "contentsOfEntireFile"}, "symbols not in the image: contentsOfEntireFile"),
        ({"method_code": bytes(3)}, "readDocumentFile has"),
        ({"with_method": False}, "the class has no method readDocumentFile"),
    ],
)
def test_an_image_it_cannot_patch_is_an_image_error(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ImageError, match=message):
        patch_read_document_file(build_image(**kwargs).image)  # type: ignore[arg-type]


def test_header_is_checked() -> None:
    image = build_image().image
    assert read_header(image).old_base == BASE
    with pytest.raises(ImageError, match="not 6502"):
        read_header(struct.pack("<I", 6504) + image[4:])
    with pytest.raises(ImageError, match="shorter"):
        read_header(image[:-8])
    with pytest.raises(ImageError, match="shorter than an image header"):
        read_header(image[:20])


def test_raw_answer_is_read_as_the_image_prints_it() -> None:
    assert squeakvm.parse_raw("812 (1 2 nil 40)\r") == (812, [1, 2, None, 40])
    with pytest.raises(ValueError, match="not an Array printString"):
        squeakvm.parse_raw("812 #(1 2")


def test_scratch_image_patch() -> None:
    """On the real image: one object's body changes; its objects all still walk."""
    if not squeakvm.IMAGE.is_file():
        unavailable(f"no {squeakvm.IMAGE} (Debian package `scratch`)")
    original = squeakvm.IMAGE.read_bytes()
    patched = patch_read_document_file(original)
    patch = plan_patch(original)
    start, end = patch.offset, patch.offset + patch.length
    assert len(patched) == len(original) and patched[start:end] != original[start:end]
    assert patched[:start] == original[:start] and patched[end:] == original[end:]
    assert list(squeakvm.Heap(patched).oops()) == list(squeakvm.Heap(original).oops())
